// A `finesse` identity provider through the Admin API: config validation (400s with Keycloak-
// style messages) and the typed config the login path reads (defaults, the admin password
// opened, cached per realm context and refreshed by identity provider writes).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { finesseProviderConfig, realmFinesseProviders } from '../../../src/federation/finesse/config.ts';
import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { finesseTestTls } from '../../support/finesse.ts';

let bench: AdminBench;
let caPem: string;

beforeAll(async () => {
  bench = await startAdminBench();
  caPem = (await finesseTestTls()).caPem;
  await bench.admin.realms.create({ realm: 'cc', enabled: true });
  await bench.admin.realms.create({ realm: 'cc-lab', enabled: true, sslRequired: 'none' });
}, 60_000);
afterAll(async () => {
  await bench?.stop();
});

async function create(realm: string, alias: string, config: Record<string, string>, extra: Record<string, unknown> = {}): Promise<Response> {
  return bench.api(`/${realm}/identity-provider/instances`, {
    method: 'POST', body: JSON.stringify({ alias, providerId: 'finesse', config, ...extra }),
  });
}

async function rejection(realm: string, config: Record<string, string>): Promise<string> {
  const response = await create(realm, 'bad', config);
  expect(response.status).toBe(400);
  return ((await response.json()) as { errorMessage: string }).errorMessage;
}

describe('validation', () => {
  const URLS = 'https://finesse-a.example:8445 https://finesse-b.example:8445';

  it('requires finesseUrls, each an absolute https URL', async () => {
    expect(await rejection('cc', {})).toBe('Finesse identity provider requires finesseUrls');
    expect(await rejection('cc', { finesseUrls: ' , ' })).toBe('Finesse identity provider requires finesseUrls');
    expect(await rejection('cc', { finesseUrls: 'finesse-a.example:8445' })).toBe('Invalid protocol/scheme for url [finesseUrls]');
    expect(await rejection('cc', { finesseUrls: 'https://a.example, not a url' })).toBe('The url [finesseUrls] is malformed');
    expect(await rejection('cc', { finesseUrls: 'ftp://finesse-a.example' })).toBe('Invalid protocol/scheme for url [finesseUrls]');
    expect(await rejection('cc', { finesseUrls: 'https://a.example http://b.example:8082' })).toBe('The url [finesseUrls] requires secure connections');
    // Even on a local address: the agent's password travels in this request.
    expect(await rejection('cc', { finesseUrls: 'http://127.0.0.1:8082' })).toBe('The url [finesseUrls] requires secure connections');
    expect(await rejection('cc', { finesseUrls: 'https://admin:pw@a.example' })).toBe('The url [finesseUrls] must not contain credentials, a query or a fragment');
  });

  it('allows http when the realm requires no SSL', async () => {
    const response = await create('cc-lab', 'lab', { finesseUrls: 'http://finesse.lab:8082' });
    expect(response.status).toBe(201);
  });

  it('checks timeouts, booleans and the sync period', async () => {
    expect(await rejection('cc', { finesseUrls: URLS, connectTimeout: 'soon' })).toBe('connectTimeout must be a number of milliseconds between 1 and 600000');
    expect(await rejection('cc', { finesseUrls: URLS, readTimeout: '0' })).toBe('readTimeout must be a number of milliseconds between 1 and 600000');
    expect(await rejection('cc', { finesseUrls: URLS, readTimeout: '-5' })).toMatch(/^readTimeout must be/);
    expect(await rejection('cc', { finesseUrls: URLS, tlsVerify: 'no' })).toBe('tlsVerify must be true or false');
    expect(await rejection('cc', { finesseUrls: URLS, createUsers: 'yes' })).toBe('createUsers must be true or false');
    expect(await rejection('cc', { finesseUrls: URLS, syncPeriod: '1h' })).toBe('syncPeriod must be a number of seconds');
  });

  it('requires the CA bundle to be PEM certificates', async () => {
    expect(await rejection('cc', { finesseUrls: URLS, caBundle: 'not a certificate' })).toBe('caBundle contains no PEM certificate');
    const broken = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----';
    expect(await rejection('cc', { finesseUrls: URLS, caBundle: `${caPem}\n${broken}` })).toBe('caBundle certificate 2 cannot be parsed');
  });

  it('requires the admin credentials as a pair and sane group path and client ids', async () => {
    expect(await rejection('cc', { finesseUrls: URLS, finesseAdminUsername: 'fadmin' })).toBe('finesseAdminUsername and finesseAdminPassword must be set together');
    expect(await rejection('cc', { finesseUrls: URLS, finesseAdminPassword: 'pw' })).toBe('finesseAdminUsername and finesseAdminPassword must be set together');
    expect(await rejection('cc', { finesseUrls: URLS, teamsGroupPath: '//' })).toBe('teamsGroupPath must name a group, e.g. /finesse-teams');
    expect(await rejection('cc', { finesseUrls: URLS, tokenExchangeClients: 'desktop bad\u0001id' })).toMatch(/^Invalid client id in tokenExchangeClients/);
  });
});

describe('finesseProviderConfig / realmFinesseProviders', () => {
  it('applies the defaults and opens the admin password', async () => {
    const response = await create('cc', 'finesse', {
      finesseUrls: 'https://finesse-a.example:8445, https://finesse-b.example:8445/', caBundle: caPem,
      finesseAdminUsername: 'fadmin', finesseAdminPassword: 'Admin pw 1', tokenExchangeClients: 'agent-desktop, supervisor-desktop',
    }, { trustEmail: true });
    expect(response.status).toBe(201);
    // The Admin API masks the secret.
    const shown = await (await bench.api('/cc/identity-provider/instances/finesse')).json() as { config: Record<string, string> };
    expect(shown.config.finesseAdminPassword).toBe('**********');

    const realm = (await bench.server.registry.get('cc'))!;
    const [config, ...others] = await realmFinesseProviders(realm);
    expect(others).toEqual([]);
    expect(config).toEqual({
      alias: 'finesse', internalId: expect.any(String), realmId: realm.id, enabled: true,
      urls: ['https://finesse-a.example:8445', 'https://finesse-b.example:8445/'], caBundle: caPem.trim(), tlsVerify: true,
      connectTimeout: 3000, readTimeout: 5000, agentRole: 'agent', supervisorRole: 'supervisor', teamsGroupPath: '/finesse-teams',
      createUsers: true, adminUsername: 'fadmin', adminPassword: 'Admin pw 1', syncPeriod: -1,
      tokenExchangeClients: ['agent-desktop', 'supervisor-desktop'], trustEmail: true,
    });
  });

  it('reads every key, and sees Admin API updates and disabled providers', async () => {
    const realm = (await bench.server.registry.get('cc'))!;
    await realmFinesseProviders(realm);
    const current = await (await bench.api('/cc/identity-provider/instances/finesse')).json() as Record<string, unknown> & { config: Record<string, string> };
    const put = await bench.api('/cc/identity-provider/instances/finesse', {
      method: 'PUT',
      body: JSON.stringify({
        ...current,
        config: {
          ...current.config, tlsVerify: 'false', connectTimeout: '1500', readTimeout: '2500', agentRole: 'cc.agent', supervisorRole: 'lead',
          teamsGroupPath: 'cc/teams/', createUsers: 'false', syncPeriod: '600', caBundle: '',
        },
      }),
    });
    expect(put.status).toBe(204);
    const updated = (await bench.server.registry.get('cc'))!;
    expect(updated).not.toBe(realm);
    const [config] = await realmFinesseProviders(updated);
    expect(config).toMatchObject({
      tlsVerify: false, connectTimeout: 1500, readTimeout: 2500, agentRole: 'cc.agent', supervisorRole: 'lead', teamsGroupPath: '/cc/teams',
      createUsers: false, syncPeriod: 600, adminPassword: 'Admin pw 1',
    });
    expect(config!.caBundle).toBeUndefined();

    await bench.api('/cc/identity-provider/instances/finesse', { method: 'PUT', body: JSON.stringify({ ...current, enabled: false }) });
    expect(await realmFinesseProviders((await bench.server.registry.get('cc'))!)).toEqual([]);
  });

  it('falls back to the defaults for unreadable stored values', async () => {
    const row = {
      internal_id: 'id', realm_id: 'realm', alias: 'x', provider_id: 'finesse', display_name: null, enabled: true, trust_email: false,
      store_token: false, link_only: false, hide_on_login: false, secrets_sealed: null, extra: {},
      config: { finesseUrls: 'https://a.example', connectTimeout: 'x', readTimeout: '-1', createUsers: 'maybe', tlsVerify: 'maybe', syncPeriod: '' },
    };
    expect(finesseProviderConfig(row, bench.server.box)).toMatchObject({
      connectTimeout: 3000, readTimeout: 5000, createUsers: true, tlsVerify: true, syncPeriod: -1, tokenExchangeClients: [],
    });
  });
});
