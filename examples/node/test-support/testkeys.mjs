// The spec's fixed test keys (docs/spec/examples/keys/README.md): only the public halves are
// files; each private scalar is SHA-256 of "masp-wire/2 example/key/<kid>", derived here.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { agencyKeysFrom } from '../lib/keys.mjs';

export async function testKey(keysDir, party, use) {
  const jwk = JSON.parse(await readFile(`${keysDir}/${party}/${use}.public.jwk`, 'utf8'));
  const d = createHash('sha256').update(`masp-wire/2 example/key/${jwk.kid}`).digest('base64url');
  return { ...jwk, d };
}

export async function loadTestKeys(keysDir, party) {
  return agencyKeysFrom(party, await testKey(keysDir, party, 'sig'), await testKey(keysDir, party, 'enc'));
}
