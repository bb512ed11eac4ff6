// node-postgres through the gateway: simple, parameterized, a named
// prepared statement, a refused statement, and a transaction.
// Connection details come from TG_HOST, TG_PORT, TG_USER, TG_PASSWORD, TG_DB.
const { Client } = require('pg');

async function main() {
  const client = new Client({
    host: process.env.TG_HOST,
    port: Number(process.env.TG_PORT),
    user: process.env.TG_USER,
    password: process.env.TG_PASSWORD,
    database: process.env.TG_DB,
    application_name: 'node-pg-check',
  });
  await client.connect();
  const count = await client.query('SELECT count(*) AS n FROM orders');
  console.log('count', count.rows[0].n);
  const items = await client.query('SELECT item FROM orders WHERE qty >= $1 ORDER BY id', [3]);
  console.log('items', items.rows.map((r) => r.item).join(','));
  await client.query('BEGIN');
  await client.query('INSERT INTO orders (item, qty) VALUES ($1, $2)', ['node-row', 7]);
  await client.query('COMMIT');
  for (const qty of [1, 2]) {
    await client.query({ name: 'by-qty', text: 'SELECT count(*) FROM orders WHERE qty > $1', values: [qty] });
  }
  try {
    await client.query('DROP TABLE orders');
    throw new Error('DROP was not refused');
  } catch (e) {
    if (e.code !== '42501') throw e;
    console.log('refused', e.code);
  }
  const after = await client.query('SELECT 1 AS one');
  console.log('after refusal', after.rows[0].one);
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
