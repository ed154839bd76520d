import type pg from 'pg';

/**
 * `work` in one transaction on a connection of `pool`: committed when it resolves, rolled back
 * when it (or BEGIN, or COMMIT) throws, the error passed on as it is (callers map it, e.g. with
 * storageError). A connection whose ROLLBACK failed is dropped, not handed out again.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}
