#!/usr/bin/env node
// MASP Exchange round trip, from the four agencies' side (docs/spec/).
//
// police sends a case referral; advocacy takes it from its HTTP mailbox, probation and nhs
// from their RabbitMQ inboxes; each verifies everything the spec says a recipient must and
// acknowledges; police watches the delivery states and its case events. Each step prints
// `ok <step>`, or `FAIL <step>: <reason>` and the process exits 1.
//
// Environment:
//   MASP_URL             the broker's base URL
//   MASP_AMQP_URL        amqp://user:pass@host:port/vhost
//   MASP_NAMESPACE       the deployment namespace (RabbitMQ names become `N.` + name); may be empty
//   MASP_KEYS_DIR        <agency>/sig.private.jwk and <agency>/enc.private.jwk for each agency
//   MASP_JWS_ALG_NAMES   optional, as given to the broker (`probation=EdDSA`): the alg name each
//                        agency registered; broker-signed objects for it must carry that name
//   MASP_DELIVERY_MODES  optional, as given to the broker (`advocacy=mailbox`): a mailbox-mode
//                        agency's deliveries must never be published to RabbitMQ
//   MASP_TIMEOUT_S       optional, how long to wait for each asynchronous step (default 60)

import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { AgencyClient, Problem, discoverKeys } from './lib/broker.mjs';
import { loadAgencyKeys } from './lib/keys.mjs';
import * as message from './lib/message.mjs';
import * as jwe from './lib/jwe.mjs';
import * as jws from './lib/jws.mjs';
import { parseStrict } from './lib/json.mjs';
import { verifyReceipt, deliveredTo } from './lib/receipt.mjs';
import { openDelivery, DeliveryRefused } from './lib/delivery.mjs';
import { loadBodySchema, receivedVariant, validate } from './lib/schema.mjs';
import { caseReferral, victimConsent, VICTIM_CLASSES } from './lib/example-case.mjs';

const AGENCIES = ['police', 'probation', 'nhs', 'advocacy'];
const SCHEMAS_DIR = new URL('../../schemas/json/', import.meta.url).pathname;

// ---------------------------------------------------------------------------------------
// Settings and small helpers

function setting(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** `probation=EdDSA,nhs=Ed25519` → { probation: 'EdDSA', nhs: 'Ed25519' } */
function parseAgencyMap(text = '') {
  return Object.fromEntries(
    text.split(',').filter(Boolean).map((pair) => pair.split('=').map((s) => s.trim())),
  );
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a truthy value, or fails after the timeout. */
async function waitFor(what, probe, { timeoutMs, intervalMs = 250, detail = () => '' }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await probe();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${detail() ? `; ${detail()}` : ''}`);
    await sleep(intervalMs);
  }
}

let currentStep = '(start)';
async function step(label, fn) {
  currentStep = label;
  const notes = [];
  const result = await fn((text) => notes.push(text));
  console.log(`ok ${label}${notes.length ? ` (${notes.join('; ')})` : ''}`);
  return result;
}

// ---------------------------------------------------------------------------------------
// What an agency's application would do with a verified delivery: keep it once.

class Inbox {
  constructor() {
    this.byDeliveryId = new Map();
  }

  /** Hands a delivery to the application unless it already has it (delivery.md check 10). */
  handOver(delivery) {
    if (this.byDeliveryId.has(delivery.deliveryId)) return false;
    this.byDeliveryId.set(delivery.deliveryId, delivery);
    return true;
  }
}

// ---------------------------------------------------------------------------------------
// The round trip

async function main() {
  const cfg = {
    url: setting('MASP_URL'),
    amqpUrl: setting('MASP_AMQP_URL'),
    namespace: process.env.MASP_NAMESPACE ?? '',
    keysDir: setting('MASP_KEYS_DIR'),
    algNames: parseAgencyMap(process.env.MASP_JWS_ALG_NAMES),
    deliveryModes: parseAgencyMap(process.env.MASP_DELIVERY_MODES),
    timeoutMs: Number(process.env.MASP_TIMEOUT_S || 60) * 1000,
  };
  const amqpName = (name) => (cfg.namespace ? `${cfg.namespace}.${name}` : name);
  const registeredAlg = (agency) => cfg.algNames[agency] ?? 'Ed25519';

  const cleanup = [];
  try {
    // 1. Keys: our own private keys, and the broker's and agencies' public sets, pinned.
    const { clients, keys } = await step('1 keys', async (note) => {
      const keys = await discoverKeys(cfg.url);
      const clients = {};
      for (const agency of AGENCIES) {
        const own = await loadAgencyKeys(cfg.keysDir, agency);
        // Our signing key must be the one the broker registered for us.
        if (!keys.agencies.lookup(own.sig.kid, { agency, use: 'sig' })) {
          throw new Error(`${own.sig.kid} is not a registered, usable key of ${agency}`);
        }
        clients[agency] = new AgencyClient(cfg.url, own, { alg: registeredAlg(agency) });
      }
      const sig = keys.broker.newestActive('broker', 'sig');
      const enc = keys.broker.newestActive('broker', 'enc');
      if (!sig || !enc) throw new Error('the broker publishes no active sig and enc key');
      // Development pinning (keys.md): the set fetched now is the only one trusted for the run.
      note(`broker ${sig.kid} ${sig.thumbprint}, ${enc.kid} ${enc.thumbprint}`);
      return { clients, keys };
    });

    // The schema a recipient validates a minimised body against (delivery.md): what this
    // agency may receive now, from the broker; a broker without that route gets the
    // deployment-independent variant (the repository's schema, nothing required).
    const receivedSchema = async (agency, maspType) => {
      try {
        return await clients[agency].receivedSchema(maspType);
      } catch (err) {
        if (!(err instanceof Problem) || err.code !== 'http-404') throw err;
        return receivedVariant(await loadBodySchema(SCHEMAS_DIR, maspType));
      }
    };

    // Everything a recipient needs to check a delivery.
    const inboxes = Object.fromEntries(AGENCIES.map((a) => [a, new Inbox()]));
    const schemaCache = new Map();
    const checksFor = (agency) => ({
      own: clients[agency].own,
      brokerKeys: keys.broker,
      agencyKeys: keys.agencies,
      algorithms: jws.SIGNATURE_ALGS, // SHOULD accept both names; step 5 checks the registered one
      schemaFor: async (maspType) => {
        const key = `${agency}/${maspType}`;
        if (!schemaCache.has(key)) schemaCache.set(key, await receivedSchema(agency, maspType));
        return schemaCache.get(key);
      },
    });

    // 2. Case events: our own queue on masp.events, bound for police.#, before we send.
    const conn = await amqp.connect(cfg.amqpUrl);
    cleanup.push(() => conn.close());
    // A channel error (e.g. a queue that does not exist) also closes the connection with an
    // 'error' event; the operation that caused it rejects, and that is what we report.
    conn.on('error', () => {});
    const events = [];
    const eventsQueue = amqpName(`events.police.roundtrip-${randomUUID().slice(0, 8)}`);
    const eventsChannel = await step('2 subscribe to case events', async (note) => {
      const ch = await conn.createChannel();
      await ch.checkExchange(amqpName('masp.events'));
      // Exclusive: RabbitMQ deletes it with our connection even if we never get to step 8.
      await ch.assertQueue(eventsQueue, { exclusive: true, durable: false });
      await ch.bindQueue(eventsQueue, amqpName('masp.events'), 'police.#');
      const seen = new Set();
      const { consumerTag } = await ch.consume(eventsQueue, (msg) => {
        if (msg === null) return; // the consumer was cancelled by RabbitMQ
        // Events may be published again after a broker crash: de-duplicate by message_id.
        if (!seen.has(msg.properties.messageId)) {
          seen.add(msg.properties.messageId);
          events.push(parseStrict(msg.content.toString('utf8')));
        }
        ch.ack(msg);
      });
      note(eventsQueue);
      return { ch, consumerTag };
    });

    // 3. police: record the victim's consent, then send the case referral.
    const police = clients.police;
    const sendAsPolice = async (draft) => {
      const { sdJwt, claims } = await message.compose({ signer: police.own, alg: police.alg, ...draft });
      const brokerEnc = keys.broker.newestActive('broker', 'enc');
      const sealed = await jwe.seal(sdJwt, { key: brokerEnc.key, kid: brokerEnc.kid, cty: message.TYP });
      const response = await police.submit(sealed);
      const receipt = await verifyReceipt(response, {
        sdJwt,
        messageId: claims.jti,
        agency: 'police',
        brokerKeys: keys.broker,
        algorithms: [registeredAlg('police')],
      });
      return { claims, receipt };
    };

    const referral = caseReferral();
    await step('3a police records the victim consent (consent_change)', async (note) => {
      const { receipt } = await sendAsPolice(victimConsent(referral));
      note(`decisions ${receipt.decisions.map((d) => `${d.recipient}=${d.decision}`).join(', ')}`);
    });

    const sent = await step('3 police submits a case_referral', async (note) => {
      const body = referral.body;
      const errors = validate(await loadBodySchema(SCHEMAS_DIR, referral.maspType), body);
      if (errors.length) throw new Error(`our own body is invalid: ${errors.join('; ')}`);
      const { claims, receipt } = await sendAsPolice(referral);
      const recipients = deliveredTo(receipt);
      for (const want of ['advocacy', 'nhs', 'probation']) {
        if (!recipients.includes(want)) {
          throw new Error(`no delivery to ${want}: ${JSON.stringify(receipt.decisions)}`);
        }
      }
      note(`message ${claims.jti}; ${receipt.decisions.map((d) => `${d.recipient}=${d.decision}`).join(', ')}`);
      return { messageId: claims.jti, receipt, recipients };
    });
    const isOurs = (d) => d.token.message_id === sent.messageId;

    // 4. advocacy (mailbox mode): poll, fetch, verify, acknowledge over HTTP.
    const advocacy = clients.advocacy;
    const received = {};
    await step('4 advocacy receives from its HTTP mailbox', async (note) => {
      let lastRefusal = '';
      received.advocacy = await waitFor(
        'the delivery in the advocacy mailbox',
        async () => {
          // What is still to fetch: published (and queued, for the moment before the relay
          // has run) and dead_lettered (mailbox.md).
          const waiting = [];
          for (const state of ['queued', 'published', 'dead_lettered']) waiting.push(...(await advocacy.mailbox(state)));
          let ours = null;
          for (const summary of waiting) {
            const item = await advocacy.mailboxItem(summary.delivery_id);
            if (!item.jwe) continue; // settled meanwhile
            let d;
            try {
              d = await openDelivery(item.jwe, checksFor('advocacy'));
              if (d.deliveryId !== summary.delivery_id) throw new DeliveryRefused('token jti is not the mailbox delivery id');
            } catch (err) {
              if (!(err instanceof DeliveryRefused)) throw err;
              lastRefusal = err.message; // not acknowledged: we cannot trust its delivery id
              continue;
            }
            inboxes.advocacy.handOver(d);
            const answer = await advocacy.ack(d.deliveryId, await advocacy.signAck({ deliveryId: d.deliveryId, messageId: d.token.message_id }));
            if (answer.state !== 'acknowledged') throw new Error(`ack answered state ${answer.state}`);
            if (isOurs(d)) ours = { ...d, mailboxState: summary.state };
          }
          return ours;
        },
        { timeoutMs: cfg.timeoutMs, intervalMs: 500, detail: () => (lastRefusal ? `last refusal: ${lastRefusal}` : '') },
      );
      const d = received.advocacy;
      // mailbox.md: in mailbox mode a delivery is `published` to the mailbox only: nothing is
      // ever put in the agency's RabbitMQ queue, where nobody would read it.
      if (cfg.deliveryModes.advocacy === 'mailbox') {
        const ch = await conn.createChannel();
        try {
          const { messageCount } = await ch.checkQueue(amqpName('inbox.advocacy'));
          if (messageCount !== 0) throw new Error(`advocacy is in mailbox mode, yet its queue holds ${messageCount}`);
        } finally {
          await ch.close().catch(() => {});
        }
      }
      note(`delivery ${d.deliveryId} (${d.mailboxState}), ${Object.keys(d.message.body).length} fields, ${d.token.withheld} withheld, token alg ${d.alg}`);
    });

    // 5, 6. probation and nhs (amqp mode): consume the inbox queue, verify, ack over AMQP.
    const receiveOverAmqp = async (agency) => {
      const client = clients[agency];
      const ch = await conn.createConfirmChannel();
      await ch.prefetch(16);
      const inbox = amqpName(`inbox.${agency}`);
      await ch.checkQueue(inbox);
      let lastRefusal = '';
      let consumerTag;
      try {
        return await new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`no delivery of ${sent.messageId} in ${inbox}${lastRefusal ? `; last refusal: ${lastRefusal}` : ''}`)),
            cfg.timeoutMs,
          );
          // Every delivery in the inbox is verified and acknowledged, one at a time, not only
          // ours: once ours has come, what else is there is drained until the queue is idle.
          let found = null;
          let idle;
          const settle = () => {
            clearTimeout(idle);
            idle = setTimeout(() => resolve(found), 1000);
          };
          let chain = Promise.resolve();
          const onMessage = (msg) => {
            chain = chain.then(() => handle(msg));
          };
          const handle = async (msg) => {
            if (msg === null) return reject(new Error(`RabbitMQ cancelled our consumer on ${inbox}`));
            let d;
            try {
              // The AMQP properties (message_id, masp-sender, masp-type) are unsigned hints: unused.
              d = await openDelivery(msg.content.toString('latin1'), checksFor(agency));
            } catch (err) {
              if (!(err instanceof DeliveryRefused)) {
                ch.nack(msg, false, true); // a local failure: let RabbitMQ redeliver
                return reject(err);
              }
              lastRefusal = err.message;
              ch.reject(msg, false); // unverifiable: dead-lettered for the operators, never acked
              if (found) settle();
              return;
            }
            try {
              inboxes[agency].handOver(d); // once per delivery id, however often it arrives
              const ack = await client.signAck({ deliveryId: d.deliveryId, messageId: d.token.message_id });
              ch.publish(amqpName('masp.acks'), '', Buffer.from(ack, 'ascii'), { contentType: 'application/jose', persistent: true });
              await ch.waitForConfirms();
              ch.ack(msg);
              if (isOurs(d)) {
                clearTimeout(timer);
                found = d;
              }
              if (found) settle();
            } catch (err) {
              reject(err);
            }
          };
          ch.consume(inbox, onMessage, { noAck: false }).then((ok) => (consumerTag = ok.consumerTag), reject);
        });
      } finally {
        if (consumerTag) await ch.cancel(consumerTag).catch(() => {});
        await ch.close().catch(() => {});
      }
    };

    const checkRegisteredAlg = (agency, d) => {
      if (d.alg !== registeredAlg(agency)) {
        throw new Error(`delivery token alg ${d.alg}, but ${registeredAlg(agency)} is registered for ${agency}`);
      }
    };
    checkRegisteredAlg('advocacy', received.advocacy);

    await step('5 probation receives from its AMQP inbox', async (note) => {
      const d = (received.probation = await receiveOverAmqp('probation'));
      checkRegisteredAlg('probation', d);
      note(`delivery ${d.deliveryId}, ${Object.keys(d.message.body).length} fields, ${d.token.withheld} withheld, token alg ${d.alg}`);
    });

    await step('6 nhs receives from its AMQP inbox, nothing of the victim', async (note) => {
      const d = (received.nhs = await receiveOverAmqp('nhs'));
      checkRegisteredAlg('nhs', d);
      // The hard rule: nothing that locates or identifies the victim reaches nhs.
      const schema = await loadBodySchema(SCHEMAS_DIR, d.token.masp_type);
      const victimFields = Object.keys(d.message.body).filter((f) =>
        VICTIM_CLASSES.includes(schema.properties[f]?.['x-masp-data-class']),
      );
      if (victimFields.length) throw new Error(`victim fields disclosed to nhs: ${victimFields.join(', ')}`);
      if (d.message.subjects.some((s) => s.category === 'victim')) throw new Error('a victim reference disclosed to nhs');
      if (d.token.subjects.some((s) => s.category === 'victim')) throw new Error('a victim pseudonym given to nhs');
      if (d.message.consentRef !== undefined) throw new Error("the victim's consent reference disclosed to nhs");
      note(`delivery ${d.deliveryId}, fields ${Object.keys(d.message.body).sort().join(', ')}; ${d.token.withheld} withheld`);
    });

    // 7. police: the sender's view, until every delivery is acknowledged.
    const status = await step('7 police sees every delivery acknowledged', async (note) => {
      const s = await waitFor(
        'every delivery acknowledged',
        async () => {
          const view = await police.messageStatus(sent.messageId);
          const done = view.deliveries.length === sent.recipients.length && view.deliveries.every((x) => x.state === 'acknowledged');
          return done && view;
        },
        { timeoutMs: cfg.timeoutMs },
      );
      for (const agency of sent.recipients) {
        const row = s.deliveries.find((x) => x.recipient === agency);
        if (row.delivery_id !== received[agency].deliveryId) throw new Error(`${agency}: delivery id differs from the one received`);
      }
      note(s.deliveries.map((x) => `${x.recipient}=${x.state}`).join(', '));
      return s;
    });

    // 8. police: the case events say the same.
    await step('8 police hears delivery.acknowledged for each recipient', async (note) => {
      await waitFor(
        'delivery.acknowledged events',
        () => {
          const acked = new Set(
            events.filter((e) => e.event === 'delivery.acknowledged' && e.message_id === sent.messageId).map((e) => e.recipient),
          );
          return sent.recipients.every((r) => acked.has(r));
        },
        { timeoutMs: cfg.timeoutMs },
      );
      const mine = events.filter((e) => e.message_id === sent.messageId).map((e) => e.event);
      await eventsChannel.ch.cancel(eventsChannel.consumerTag);
      await eventsChannel.ch.deleteQueue(eventsQueue);
      note(`${mine.length} events: ${[...new Set(mine)].join(', ')}; queue deleted`);
    });

    // 9. A refusal with a documented code: a mistyped purpose is `422 purpose-not-agreed`,
    //    naming the claim and listing the purposes that would do (problems.md).
    await step('9 a mistyped purpose is refused as purpose-not-agreed', async (note) => {
      try {
        await sendAsPolice({ ...caseReferral(), purpose: 'risk_managment' });
      } catch (err) {
        if (!(err instanceof Problem)) throw err;
        const p = err.problem;
        if (err.status !== 422 || p.code !== 'purpose-not-agreed' || p.claim !== 'purpose') {
          throw new Error(`expected 422 purpose-not-agreed (claim purpose), got ${err.status} ${JSON.stringify(p)}`);
        }
        if (p.status !== 422 || p.type !== `https://masp.example/problems/${p.code}` || typeof p.title !== 'string') {
          throw new Error(`problem document not as problems.md says: ${JSON.stringify(p)}`);
        }
        if (!Array.isArray(p.agreed_purposes) || !p.agreed_purposes.includes(caseReferral().purpose)) {
          throw new Error(`agreed_purposes does not list ${caseReferral().purpose}: ${JSON.stringify(p.agreed_purposes)}`);
        }
        note(`${err.status} ${p.code}, agreed_purposes ${p.agreed_purposes.join(', ')}`);
        return;
      }
      throw new Error('the broker accepted it');
    });

    const deliveries = Object.fromEntries(
      status.deliveries.map((x) => [x.recipient, { delivery_id: x.delivery_id, state: x.state }]),
    );
    console.log(JSON.stringify({ message_id: sent.messageId, deliveries }));
  } finally {
    for (const undo of cleanup.reverse()) await undo().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.log(`FAIL ${currentStep}: ${err.message.replace(/\s+/g, ' ')}`);
    process.exit(1);
  },
);
