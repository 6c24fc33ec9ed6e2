// The Finesse REST client against the HTTPS stand-in: Basic and Bearer lookups, failover from a
// dead, failing or hung primary, timeouts, broken XML, TLS with and without the test CA, ids that
// would bend the URL, and the admin listings.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  closeFinesseAgents, FinesseResponseError, FinesseUnavailableError, getFinesseUser, listFinesseTeams, listFinesseUsers, setFinesseLogger,
  type FinesseClientSettings,
} from '../../src/federation/finesse/client.ts';
import { closedPort, startFinesse, startSilentServer, type FinesseStandIn, type FinesseStandInUser } from '../support/finesse.ts';

const AGENT: FinesseStandInUser = {
  loginId: '1001002', loginName: 'ajones', password: 'Agent-pw-1', firstName: 'Alex', lastName: 'Jones', extension: '4002',
  roles: ['Agent'], teamId: '500', teamName: 'Sales',
};
const SUPERVISOR: FinesseStandInUser = {
  loginId: '1001001', loginName: 'csmith', password: 'Super-pw-1', firstName: 'Chris', lastName: 'Smith', extension: '4001',
  roles: ['Agent', 'Supervisor'], teamId: '500', teamName: 'Sales',
  supervisedTeams: [{ id: '500', name: 'Sales' }, { id: '501', name: 'Support' }],
};

let primary: FinesseStandIn;
let secondary: FinesseStandIn;
const started: FinesseStandIn[] = [];
const logged: { obj: unknown; msg: string | undefined }[] = [];

async function standIn(mode: FinesseStandIn['mode'] = 'normal', slowMs?: number): Promise<FinesseStandIn> {
  const finesse = await startFinesse({ mode, adminUsername: 'fadmin', adminPassword: 'Admin-pw-1', ...(slowMs ? { slowMs } : {}) });
  finesse.addUser(AGENT);
  finesse.addUser(SUPERVISOR);
  finesse.addTeam({ id: '500', name: 'Sales' });
  finesse.addTeam({ id: '501', name: 'Support' });
  started.push(finesse);
  return finesse;
}

const settings = (urls: string[], extra: Partial<FinesseClientSettings> = {}): FinesseClientSettings => ({
  alias: 'finesse', urls, caBundle: primary.caPem, tlsVerify: true, connectTimeout: 1000, readTimeout: 1000,
  adminUsername: 'fadmin', adminPassword: 'Admin-pw-1', ...extra,
});

const basic = (username: string, password: string) => ({ basic: { username, password } });

async function unavailable(promise: Promise<unknown>): Promise<FinesseUnavailableError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(FinesseUnavailableError);
  return error as FinesseUnavailableError;
}

async function refused(promise: Promise<unknown>): Promise<FinesseResponseError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(FinesseResponseError);
  return error as FinesseResponseError;
}

beforeAll(async () => {
  setFinesseLogger({ warn: ((obj: unknown, msg?: string) => { logged.push({ obj, msg }); }) as never });
  primary = await standIn();
  secondary = await standIn();
});
afterAll(async () => {
  await closeFinesseAgents();
  await Promise.all(started.map((f) => f.stop()));
});
beforeEach(() => {
  for (const f of started) f.requests.length = 0;
  logged.length = 0;
});

describe('GET /finesse/api/User/{id} with Basic', () => {
  it('signs in an agent by loginName or loginId and reads the documented XML', async () => {
    const byName = await getFinesseUser(settings([primary.url]), 'ajones', basic('ajones', AGENT.password));
    expect(byName).toEqual({
      status: 'ok',
      user: {
        loginId: '1001002', loginName: 'ajones', firstName: 'Alex', lastName: 'Jones', extension: '4002',
        roles: ['Agent'], teamId: '500', teamName: 'Sales', supervisedTeams: [],
      },
    });
    const byId = await getFinesseUser(settings([primary.url]), '1001001', basic('1001001', SUPERVISOR.password));
    expect(byId.status === 'ok' && byId.user).toMatchObject({
      loginName: 'csmith', roles: ['Agent', 'Supervisor'], supervisedTeams: [{ id: '500', name: 'Sales' }, { id: '501', name: 'Support' }],
    });
    expect(primary.requests.map((r) => [r.path, r.auth, r.username])).toEqual([
      ['/finesse/api/User/ajones', 'basic', 'ajones'],
      ['/finesse/api/User/1001001', 'basic', '1001001'],
    ]);
  });

  it('answers unauthorized on a wrong password (401) and not_found on an unknown user (404), without failover', async () => {
    const config = settings([primary.url, secondary.url]);
    expect(await getFinesseUser(config, 'ajones', basic('ajones', 'wrong'))).toEqual({ status: 'unauthorized' });
    expect(await getFinesseUser(config, 'nobody', basic('nobody', 'whatever'))).toEqual({ status: 'not_found' });
    // An agent may read only its own User.
    expect(await getFinesseUser(config, 'csmith', basic('ajones', AGENT.password))).toEqual({ status: 'unauthorized' });
    expect(primary.requests.map((r) => r.status)).toEqual([401, 404, 401]);
    expect(secondary.requests).toEqual([]);
  });

  it('percent-encodes the id into one path segment', async () => {
    expect(await getFinesseUser(settings([primary.url]), 'a b?c#d%e', basic('x', 'y'))).toEqual({ status: 'not_found' });
    expect(primary.requests.map((r) => r.path)).toEqual(['/finesse/api/User/a%20b%3Fc%23d%25e']);
  });

  it('refuses ids with a slash, a dot segment or control characters without any request', async () => {
    const config = settings([primary.url]);
    for (const id of ['a/b', '..', '../Users', 'x..y', '.', 'a\\b', 'ajones\n', 'a\u0000', '', 'x'.repeat(300)]) {
      expect(await getFinesseUser(config, id, basic('ajones', AGENT.password))).toEqual({ status: 'not_found' });
    }
    expect(primary.requests).toEqual([]);
  });
});

describe('GET /finesse/api/User/{id} with Bearer', () => {
  it('accepts an IdS token issued for that user', async () => {
    const token = primary.issueBearer(AGENT.loginId);
    const result = await getFinesseUser(settings([primary.url]), AGENT.loginId, { bearer: token });
    expect(result.status === 'ok' && result.user.loginName).toBe('ajones');
    expect(primary.requests.map((r) => [r.auth, r.username])).toEqual([['bearer', undefined]]);
  });

  it('answers unauthorized for an unknown or revoked token, or another user\'s', async () => {
    const config = settings([primary.url]);
    expect(await getFinesseUser(config, AGENT.loginId, { bearer: 'not-a-token' })).toEqual({ status: 'unauthorized' });
    const token = primary.issueBearer(AGENT.loginId);
    expect(await getFinesseUser(config, SUPERVISOR.loginId, { bearer: token })).toEqual({ status: 'unauthorized' });
    primary.revokeBearer(token);
    expect(await getFinesseUser(config, AGENT.loginId, { bearer: token })).toEqual({ status: 'unauthorized' });
  });

  it('refuses a token that could split the header without any request', async () => {
    const config = settings([primary.url]);
    for (const bearer of ['', 'abc def', 'abc\r\nX-Injected: 1', 'é']) {
      expect(await getFinesseUser(config, AGENT.loginId, { bearer })).toEqual({ status: 'unauthorized' });
    }
    expect(primary.requests).toEqual([]);
  });
});

describe('failover and failures', () => {
  it('fails over from a dead primary to the secondary', async () => {
    const dead = `https://127.0.0.1:${await closedPort()}`;
    const result = await getFinesseUser(settings([dead, secondary.url]), 'ajones', basic('ajones', AGENT.password));
    expect(result.status).toBe('ok');
    expect(secondary.requests).toHaveLength(1);
    expect(logged.map((l) => l.msg)).toContain('Finesse request failed, trying the next URL');
  });

  it('fails over from a stopped primary and from one answering 5xx', async () => {
    const stopped = await standIn();
    await stopped.stop();
    const failing = await standIn('down-5xx');
    expect((await getFinesseUser(settings([stopped.url, secondary.url]), 'ajones', basic('ajones', AGENT.password))).status).toBe('ok');
    expect((await getFinesseUser(settings([failing.url, secondary.url]), 'ajones', basic('ajones', AGENT.password))).status).toBe('ok');
    expect(failing.requests.map((r) => r.status)).toEqual([503]);
    expect(secondary.requests).toHaveLength(2);
  });

  it('throws FinesseUnavailableError naming each server when both are dead', async () => {
    const deadA = `https://127.0.0.1:${await closedPort()}`;
    const deadB = `https://127.0.0.1:${await closedPort()}`;
    const error = await unavailable(getFinesseUser(settings([deadA, deadB]), 'ajones', basic('ajones', AGENT.password)));
    expect(error.failures.map((f) => [f.url, f.kind])).toEqual([[deadA, 'refused'], [deadB, 'refused']]);
    expect(error.message).toContain(deadA);
    expect(error.message).toContain('connection refused');
    expect(logged.map((l) => l.msg)).toContain('Finesse unavailable');
  });

  it('gives up on servers that accept connections but never answer (connect timeout), then on 5xx', async () => {
    const silent = await startSilentServer();
    const failing = await standIn('down-5xx');
    try {
      const error = await unavailable(getFinesseUser(settings([silent.url, failing.url], { connectTimeout: 300 }), 'ajones', basic('ajones', AGENT.password)));
      expect(error.failures.map((f) => f.kind)).toEqual(['connect-timeout', 'server-error']);
    } finally {
      await silent.stop();
    }
  });

  it('times out on a slow server and fails over to the next', async () => {
    const slow = await standIn('slow', 20_000);
    const config = settings([slow.url], { readTimeout: 300 });
    const error = await unavailable(getFinesseUser(config, 'ajones', basic('ajones', AGENT.password)));
    expect(error.failures.map((f) => f.kind)).toEqual(['read-timeout']);
    const result = await getFinesseUser(settings([slow.url, secondary.url], { readTimeout: 300 }), 'ajones', basic('ajones', AGENT.password));
    expect(result.status).toBe('ok');
    await slow.stop();
  });

  it('refuses broken XML with a logged reason, without failover', async () => {
    const broken = await standIn('broken-xml');
    const error = await refused(getFinesseUser(settings([broken.url, secondary.url]), 'ajones', basic('ajones', AGENT.password)));
    expect(error.reason).toMatch(/^malformed XML/);
    expect(secondary.requests).toEqual([]);
    expect(logged).toContainEqual({ obj: expect.objectContaining({ provider: 'finesse', reason: error.reason }), msg: 'Finesse answer refused' });
  });

  it('refuses a response larger than the limit', async () => {
    const big = await standIn();
    big.addUser({ loginId: '9', loginName: 'big', password: 'Big-pw-1', firstName: 'x'.repeat(1024 * 1024 + 10) });
    const error = await refused(getFinesseUser(settings([big.url]), 'big', basic('big', 'Big-pw-1')));
    expect(error.reason).toMatch(/larger than/);
  });

  it('never logs passwords or tokens', async () => {
    const deadA = `https://127.0.0.1:${await closedPort()}`;
    const token = primary.issueBearer(AGENT.loginId);
    await unavailable(getFinesseUser(settings([deadA]), 'ajones', basic('ajones', AGENT.password)));
    await unavailable(getFinesseUser(settings([deadA]), 'ajones', { bearer: token }));
    await unavailable(listFinesseUsers(settings([deadA])));
    const text = JSON.stringify(logged);
    expect(logged.length).toBeGreaterThan(0);
    for (const secret of [AGENT.password, token, 'Admin-pw-1', Buffer.from(`ajones:${AGENT.password}`).toString('base64')]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe('TLS', () => {
  it('trusts the server with the test CA bundle', async () => {
    expect((await getFinesseUser(settings([primary.url]), 'ajones', basic('ajones', AGENT.password))).status).toBe('ok');
  });

  it('refuses the server with Node\'s default CAs: unavailable, a TLS failure, nothing sent', async () => {
    const error = await unavailable(getFinesseUser(settings([primary.url], { caBundle: undefined }), 'ajones', basic('ajones', AGENT.password)));
    expect(error.failures.map((f) => f.kind)).toEqual(['tls']);
    expect(error.tls).toBe(true);
    expect(error.message).toContain('TLS failure');
    expect(primary.requests).toEqual([]);
  });

  it('accepts any certificate when tlsVerify is false', async () => {
    const result = await getFinesseUser(settings([primary.url], { caBundle: undefined, tlsVerify: false }), 'ajones', basic('ajones', AGENT.password));
    expect(result.status).toBe('ok');
  });
});

describe('admin listings', () => {
  it('lists users and teams with the admin credentials', async () => {
    const users = await listFinesseUsers(settings([primary.url]));
    expect(users.map((u) => [u.loginId, u.loginName, u.roles]).sort()).toEqual([
      ['1001001', 'csmith', ['Agent', 'Supervisor']],
      ['1001002', 'ajones', ['Agent']],
    ]);
    expect(await listFinesseTeams(settings([primary.url]))).toEqual([{ id: '500', name: 'Sales' }, { id: '501', name: 'Support' }]);
    expect(primary.requests.map((r) => [r.path, r.auth, r.username])).toEqual([
      ['/finesse/api/Users', 'basic', 'fadmin'],
      ['/finesse/api/Teams', 'basic', 'fadmin'],
    ]);
  });

  it('fails over for listings too', async () => {
    const dead = `https://127.0.0.1:${await closedPort()}`;
    expect(await listFinesseTeams(settings([dead, secondary.url]))).toHaveLength(2);
  });

  it('refuses wrong or missing admin credentials', async () => {
    const wrong = await refused(listFinesseUsers(settings([primary.url], { adminPassword: 'nope' })));
    expect(wrong.reason).toBe('the admin credentials were refused (HTTP 401)');
    const agentOnly = await refused(listFinesseTeams(settings([primary.url], { adminUsername: 'ajones', adminPassword: AGENT.password })));
    expect(agentOnly.reason).toMatch(/HTTP 401/);
    const missing = await refused(listFinesseUsers(settings([primary.url], { adminUsername: undefined, adminPassword: undefined })));
    expect(missing.reason).toMatch(/no admin credentials/);
    expect(primary.requests).toHaveLength(2);
  });
});
