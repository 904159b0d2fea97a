// amqplib against the local RabbitMQ: declare, use and delete a throw-away queue.
// Skipped when no RabbitMQ answers at MASP_AMQP_URL (default the local guest account).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';

const url = process.env.MASP_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/';

async function connectOrSkip(t) {
  try {
    return await amqp.connect(url);
  } catch (err) {
    t.skip(`no RabbitMQ at ${new URL(url).host}: ${err.code || err.message}`);
    return null;
  }
}

test('declare, publish, get, ack and delete a throw-away queue', async (t) => {
  const conn = await connectOrSkip(t);
  if (!conn) return;
  try {
    const ch = await conn.createConfirmChannel();
    const name = `selftest.node-client.${randomUUID()}`;
    await ch.assertQueue(name, { durable: false, exclusive: true });
    ch.sendToQueue(name, Buffer.from('ping'), { messageId: 'm1', contentType: 'text/plain' });
    await ch.waitForConfirms();
    let msg = false;
    for (let i = 0; i < 50 && !msg; i++) {
      msg = await ch.get(name, { noAck: false });
      if (!msg) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(msg, 'message came back');
    assert.equal(msg.content.toString(), 'ping');
    assert.equal(msg.properties.messageId, 'm1');
    ch.ack(msg);
    const { messageCount } = await ch.deleteQueue(name);
    assert.equal(messageCount, 0);
    await ch.close();
  } finally {
    await conn.close();
  }
});
