// The broker's HTTP API as one agency sees it (docs/spec/conventions.md "HTTP").
// Every /v1 request carries a fresh single-use bearer assertion (authentication.md).

import * as jws from './jws.mjs';
import { KeySet } from './keyset.mjs';
import { newJti, now } from './ids.mjs';

/** A refusal: the RFC 9457 problem document the broker answered with. */
export class Problem extends Error {
  constructor(status, problem) {
    super(`${status} ${problem?.code ?? 'no problem document'}: ${problem?.detail ?? problem?.title ?? ''}`);
    this.status = status;
    this.problem = problem;
    this.code = problem?.code;
  }
}

async function readResponse(res) {
  const contentType = (res.headers.get('content-type') || '').split(';')[0].trim();
  const text = await res.text();
  const json = contentType === 'application/json' || contentType === 'application/problem+json' ? JSON.parse(text) : undefined;
  return { status: res.status, contentType, text, json, headers: res.headers };
}

/** Public endpoints: key discovery. */
export async function discoverKeys(baseUrl) {
  const get = async (path) => {
    const r = await readResponse(await fetch(new URL(path, baseUrl)));
    if (r.status !== 200 || !r.json) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return r.json;
  };
  return {
    broker: await KeySet.fromJwks(await get('/.well-known/jwks.json'), { owner: 'broker' }),
    agencies: await KeySet.fromJwks(await get('/v1/agency-keys')),
  };
}

export class AgencyClient {
  /** own: loadAgencyKeys() result; alg: the JWS alg name this agency signs with. */
  constructor(baseUrl, own, { alg = 'Ed25519' } = {}) {
    this.baseUrl = baseUrl;
    this.own = own;
    this.alg = alg;
  }

  get agency() {
    return this.own.agency;
  }

  /** A bearer assertion: typ JWT, iss = sub = agency, aud "broker", 60 s, spent on first use. */
  assertion() {
    const iat = now();
    const claims = { iss: this.agency, sub: this.agency, aud: 'broker', jti: newJti(), iat, exp: iat + 60 };
    return jws.sign(claims, { key: this.own.sig.key, kid: this.own.sig.kid, typ: 'JWT', alg: this.alg });
  }

  /** One authenticated request; throws Problem on any status ≥ 400. */
  async request(method, path, { body, contentType, accept = 'application/json' } = {}) {
    const headers = { authorization: `Bearer ${await this.assertion()}`, accept };
    if (body !== undefined) headers['content-type'] = contentType;
    const r = await readResponse(await fetch(new URL(path, this.baseUrl), { method, headers, body }));
    if (r.status >= 400) throw new Problem(r.status, r.contentType === 'application/problem+json' ? r.json : undefined);
    return r;
  }

  /** POST /v1/messages: 202 with {receipt, message_id, audit_seq, decisions}. */
  async submit(jwe) {
    const r = await this.request('POST', '/v1/messages', { body: jwe, contentType: 'application/jose' });
    if (r.status !== 202) throw new Error(`POST /v1/messages answered ${r.status}, expected 202`);
    return r.json;
  }

  async messageStatus(messageId) {
    return (await this.request('GET', `/v1/messages/${encodeURIComponent(messageId)}`)).json;
  }

  async mailbox(state) {
    const q = state ? `?state=${encodeURIComponent(state)}` : '';
    return (await this.request('GET', `/v1/mailbox${q}`)).json.deliveries;
  }

  /** The delivery JWE while the broker holds it, else the summary: tell them apart by type. */
  async mailboxItem(deliveryId) {
    const r = await this.request('GET', `/v1/mailbox/${encodeURIComponent(deliveryId)}`, { accept: 'application/jose, application/json' });
    return r.contentType === 'application/jose' ? { jwe: r.text.trim() } : { summary: r.json };
  }

  async ack(deliveryId, ackJws) {
    const r = await this.request('POST', `/v1/mailbox/${encodeURIComponent(deliveryId)}/ack`, {
      body: ackJws,
      contentType: 'application/jose',
    });
    return r.json;
  }

  /** The JSON Schema of what this agency may receive of a message type, now. */
  async receivedSchema(maspType) {
    return (await this.request('GET', `/v1/schemas/${encodeURIComponent(maspType)}`)).json;
  }

  /** A signed acknowledgement (acknowledgement.md), valid for an hour. */
  signAck({ deliveryId, messageId, status = 'accepted', reason }) {
    const iat = now();
    const claims = { iss: this.agency, aud: 'broker', delivery_id: deliveryId, message_id: messageId, status, iat, exp: iat + 3600, jti: newJti() };
    if (reason) claims.reason = reason;
    return jws.sign(claims, { key: this.own.sig.key, kid: this.own.sig.kid, typ: 'masp-ack+jwt', alg: this.alg });
  }
}
