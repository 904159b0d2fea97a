// The agency message: an SD-JWT with the strict MASP envelope (docs/spec/message.md).

import { createHash, randomBytes } from 'node:crypto';
import * as b64url from './b64url.mjs';
import * as jws from './jws.mjs';
import * as sd from './sdjwt.mjs';
import { uuidv7, now, fold, UUIDV7 } from './ids.mjs';

export const TYP = 'masp+sd-jwt';
const CLEAR_CLAIMS = ['iss', 'jti', 'iat', 'exp', 'masp_type', 'masp_schema', 'case_id', 'purpose', 'subjects', '_sd', '_sd_alg'];
// No disclosure may carry one of these names (message.md, "What the broker refuses").
const RESERVED_NAMES = new Set([...CLEAR_CLAIMS, 'nbf', 'cnf', '...']);
const CATEGORIES = ['suspect', 'convicted', 'victim', 'witness', 'child', 'other'];

/** A decoy digest: the digest of 32 random bytes, base64url-encoded (message.md). */
const decoy = () => sd.digestOf(b64url.encode(randomBytes(32)));

/**
 * Builds and signs a message. Every body field, every subject, and consent_ref / override
 * when given, become disclosures; the JWT carries codes and digests only.
 * Returns { sdJwt, claims, disclosures }.
 */
export async function compose({ signer, alg = 'Ed25519', maspType, caseId, purpose, subjects, body, consentRef, override, lifetime = 3600 }) {
  for (const s of subjects) {
    if (fold(s.ref) === fold(caseId)) throw new Error('case_id must not fold-equal a subject ref');
  }
  const subjectDisclosures = subjects.map((s) => sd.elementDisclosure({ ref: s.ref, category: s.category }));
  const propertyDisclosures = Object.entries(body)
    .filter(([, v]) => v !== null && v !== undefined) // optional fields are absent, never null
    .map(([name, value]) => sd.propertyDisclosure(name, value));
  if (consentRef !== undefined) propertyDisclosures.push(sd.propertyDisclosure('consent_ref', consentRef));
  if (override !== undefined) propertyDisclosures.push(sd.propertyDisclosure('override', override));

  const iat = now();
  const claims = {
    iss: signer.agency,
    jti: uuidv7(),
    iat,
    exp: iat + lifetime,
    masp_type: maspType,
    masp_schema: '1',
    case_id: caseId,
    purpose,
    subjects: subjectDisclosures.map((d) => ({ '...': d.digest })),
    // Sorted, so the order says nothing about which field is which (RFC 9901 §4.2.4.1).
    _sd: [...propertyDisclosures.map((d) => d.digest), decoy(), decoy()].sort(),
    _sd_alg: sd.SD_ALG,
  };
  const jwt = await jws.sign(claims, { key: signer.sig.key, kid: signer.sig.kid, typ: TYP, alg });
  const disclosures = [...propertyDisclosures, ...subjectDisclosures];
  return { sdJwt: sd.serialize(jwt, disclosures), claims, disclosures };
}

/** "sha-256:" + lower-case hex SHA-256 of the SD-JWT's ASCII bytes (submission.md). */
export function payloadDigest(sdJwt) {
  return 'sha-256:' + createHash('sha256').update(sdJwt, 'ascii').digest('hex');
}

function containsSdSyntax(value) {
  if (Array.isArray(value)) return value.some(containsSdSyntax);
  if (value && typeof value === 'object') {
    return Object.keys(value).some((k) => k === '_sd' || k === '...' || containsSdSyntax(value[k]));
  }
  return false;
}

/**
 * Verifies a (possibly minimised) message as a recipient: the sender's signature with
 * `keyFor` (the sender agency's registered keys), then every structural rule of
 * message.md. Returns { header, claims, body, subjects, disclosures } where `claims` are
 * the clear claims, `body` the disclosed body fields and `subjects` the disclosed subjects.
 */
export async function verify(sdJwt, { keyFor }) {
  const { jwt, disclosures: encoded } = sd.parse(sdJwt);
  const { header, payload } = await jws.verify(jwt, { typ: TYP, keyFor });

  // The envelope: exactly the clear claims, with their types.
  const names = Object.keys(payload);
  const extra = names.filter((n) => !CLEAR_CLAIMS.includes(n));
  const missing = CLEAR_CLAIMS.filter((n) => !names.includes(n));
  if (extra.length || missing.length) throw new Error(`message claims: extra [${extra}] missing [${missing}]`);
  if (jws.kidAgency(header.kid) !== payload.iss) throw new Error('message kid names another agency than iss');
  if (typeof payload.jti !== 'string' || !UUIDV7.test(payload.jti)) throw new Error('message jti is not a UUIDv7');
  if (!Number.isInteger(payload.iat) || !Number.isInteger(payload.exp)) throw new Error('iat/exp are not integers');
  if (payload.exp - payload.iat > 86400) throw new Error('message lifetime over 24 h');
  if (payload.masp_schema !== '1') throw new Error('masp_schema is not "1"');
  for (const c of ['masp_type', 'case_id', 'purpose']) if (typeof payload[c] !== 'string') throw new Error(`${c} is not a string`);
  if (payload._sd_alg !== sd.SD_ALG) throw new Error('_sd_alg is not sha-256');
  if (!Array.isArray(payload._sd) || !payload._sd.every((d) => typeof d === 'string')) throw new Error('_sd is not an array of strings');
  const subs = payload.subjects;
  if (!Array.isArray(subs) || subs.length < 1 || subs.length > 16) throw new Error('subjects: 1 to 16 entries');
  for (const s of subs) {
    if (!s || typeof s !== 'object' || Object.keys(s).join() !== '...' || typeof s['...'] !== 'string') {
      throw new Error('a subjects entry is not exactly {"...": digest}');
    }
  }

  // The disclosures: names, no nested SD syntax, then RFC 9901 §7.1 processing.
  for (const e of encoded) {
    const d = sd.decodeDisclosure(e);
    if (d.kind === 'property' && RESERVED_NAMES.has(d.name)) throw new Error(`a disclosure is named ${d.name}`);
    if (containsSdSyntax(d.value)) throw new Error('a disclosed value contains _sd or ...');
  }
  const { claims: unpacked, disclosures } = sd.unpack(payload, encoded);
  for (const d of disclosures) {
    const inSubjects = d.path[0] === 'subjects';
    if ((d.kind === 'element') !== inSubjects) throw new Error('a disclosure is in the wrong kind of slot');
  }

  const subjects = unpacked.subjects;
  for (const s of subjects) {
    if (!s || typeof s !== 'object' || Object.keys(s).sort().join() !== 'category,ref') throw new Error('a subject is not {ref, category}');
    if (!CATEGORIES.includes(s.category)) throw new Error('unknown subject category');
  }
  const clear = Object.fromEntries(CLEAR_CLAIMS.filter((c) => !c.startsWith('_') && c !== 'subjects').map((c) => [c, payload[c]]));
  const { consent_ref: consentRef, override, ...body } = Object.fromEntries(
    Object.entries(unpacked).filter(([k]) => !CLEAR_CLAIMS.includes(k)),
  );
  return { header, claims: clear, body, subjects, consentRef, override, disclosures };
}
