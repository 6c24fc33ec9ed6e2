// Admin API at scale (issue 4): with 10,000 realms and 100,000 users in one realm, listing realms,
// searching users by prefix and counting must stay under 50 ms p99. The data is seeded with SQL
// (generate_series), copying the settings of an imported realm so every realm row is complete;
// the seeded realms have no clients or keys, which listing does not read.
import autocannon from 'autocannon';
import pg from 'pg';

export type AdminScaleSettings = { realms: number; users: number; connections: number; duration: number; warmup: number };

export type AdminScaleRow = {
  name: string;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  totalRequests: number;
};

export const USER_PREFIX = 'scale-user-';

/** Seeds `realms` realm rows (copies of `templateRealm`'s settings) and `users` users in `userRealm`. */
export async function seedAdminScale(dbUrl: string, templateRealm: string, userRealm: string, counts: { realms: number; users: number }): Promise<{ seconds: number }> {
  const started = Date.now();
  const client = new pg.Client({ connectionString: dbUrl });
  await client.connect();
  try {
    await client.query(`
      INSERT INTO realms (id, name, enabled, display_name, settings)
      SELECT gen_random_uuid(), 'scale-' || lpad(i::text, 5, '0'), true, 'Scale tenant ' || i,
             (SELECT settings FROM realms WHERE name = $1)
      FROM generate_series(1, $2::int) AS i`, [templateRealm, counts.realms]);
    await client.query(`
      INSERT INTO users (id, realm_id, username, email, email_verified, enabled, first_name, last_name, attributes, required_actions)
      SELECT gen_random_uuid(), (SELECT id FROM realms WHERE name = $1),
             $3 || lpad(i::text, 6, '0'), $3 || lpad(i::text, 6, '0') || '@example.com', true, true,
             (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'])[1 + i % 8],
             (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Allen','Thompson'])[1 + (i / 8) % 8],
             '{}', '[]'
      FROM generate_series(1, $2::int) AS i`, [userRealm, counts.users, USER_PREFIX]);
    // What autovacuum does after a bulk insert: statistics and the visibility map (index-only scans).
    await client.query('VACUUM ANALYZE realms');
    await client.query('VACUUM ANALYZE users');
  } finally {
    await client.end();
  }
  return { seconds: Math.round((Date.now() - started) / 100) / 10 };
}

type Request = { name: string; path: () => string };

/** A 4-digit prefix of the seeded usernames: each matches about ten users. */
const randomUserPrefix = (users: number): string => `${USER_PREFIX}${String(Math.floor(Math.random() * Math.max(1, users / 10))).padStart(5, '0')}`;

export function adminScaleRequests(userRealm: string, users: number): Request[] {
  return [
    { name: 'admin: list realms (brief, first page of 100)', path: () => '/admin/realms?briefRepresentation=true&first=0&max=100' },
    { name: 'admin: list realms (brief, a page by name prefix)', path: () => `/admin/realms?briefRepresentation=true&search=scale-${String(Math.floor(Math.random() * 100)).padStart(3, '0')}&max=100` },
    { name: 'admin: search users by prefix', path: () => `/admin/realms/${userRealm}/users?search=${randomUserPrefix(users)}&max=20` },
    { name: 'admin: count users', path: () => `/admin/realms/${userRealm}/users/count` },
    { name: 'admin: count users by prefix', path: () => `/admin/realms/${userRealm}/users/count?search=${randomUserPrefix(users)}` },
    { name: 'admin: list users (first page)', path: () => `/admin/realms/${userRealm}/users?first=0&max=100&briefRepresentation=true` },
  ];
}

/** One scenario: the request with a fresh path each time, `connections` at once. */
export async function runAdminRequest(baseUrl: string, token: string, request: Request, settings: AdminScaleSettings): Promise<AdminScaleRow> {
  const run = (seconds: number) => autocannon({
    url: baseUrl,
    connections: settings.connections,
    duration: seconds,
    headers: { authorization: `Bearer ${token}` },
    requests: [{ method: 'GET', setupRequest: (req) => ({ ...req, path: request.path() }) }],
  });
  await run(settings.warmup);
  const result = await run(settings.duration);
  return {
    name: request.name,
    rate: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    totalRequests: result.requests.total,
  };
}
