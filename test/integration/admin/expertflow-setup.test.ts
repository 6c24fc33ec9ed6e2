// The Expertflow CX realm set-up (reference/cx-platforms.md section 1), done through the Admin
// REST API with the official admin client exactly as an Expertflow administrator does it, then
// checked the way APISIX checks tokens: audience `cim`, scopes `email profile`, introspection by `cim`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startAdminBench, type AdminBench } from '../../support/admin.ts';
import { basicAuth, postForm } from '../../support/server.ts';

let bench: AdminBench;
beforeAll(async () => { bench = await startAdminBench(); }, 60_000);
afterAll(async () => { await bench?.stop(); });

const decode = (jwt: string): Record<string, unknown> => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe('Expertflow realm set-up through the admin client', () => {
  it('gives the customer a token for cim that cim introspects as active', async () => {
    const { admin } = bench;
    await admin.realms.create({ realm: 'expertflow', enabled: true });
    admin.setConfig({ realmName: 'expertflow' });
    try {
      // Confidential client cim with direct access grants (the web chat widget's password grant).
      const { id: cimId } = await admin.clients.create({
        clientId: 'cim', publicClient: false, directAccessGrantsEnabled: true, standardFlowEnabled: true,
        redirectUris: ['https://cx.example.com/*'], webOrigins: ['+'],
      });
      const { value: cimSecret } = await admin.clients.getClientSecret({ id: cimId });
      expect(cimSecret).toMatch(/^[A-Za-z0-9]{32}$/);

      // 1. The fix-audience mapper on cim's dedicated scope (the client's own mappers).
      await admin.clients.addProtocolMapper({ id: cimId }, {
        name: 'fix-audience', protocol: 'openid-connect', protocolMapper: 'oidc-audience-mapper',
        config: { 'included.client.audience': 'cim', 'id.token.claim': 'true', 'access.token.claim': 'true', 'introspection.token.claim': 'true' },
      });

      // 2. User customer, e-mail verified, non-temporary password.
      const { id: userId } = await admin.users.create({
        username: 'customer', email: 'customer@example.com', emailVerified: true, enabled: true,
        firstName: 'Web', lastName: 'Customer',
      });
      await admin.users.resetPassword({ id: userId, credential: { type: 'password', value: 'customer', temporary: false } });

      // 3. Realm role customer, plus offline_access and uma_authorization, mapped to the user.
      await admin.roles.create({ name: 'customer' });
      const roles = await Promise.all(['customer', 'offline_access', 'uma_authorization'].map((name) => admin.roles.findOneByName({ name })));
      await admin.users.addRealmRoleMappings({ id: userId, roles: roles.map((r) => ({ id: r!.id!, name: r!.name! })) });

      const tokenEndpoint = `${bench.server.url}/realms/expertflow/protocol/openid-connect/token`;
      const response = await postForm(tokenEndpoint, { grant_type: 'password', username: 'customer', password: 'customer' }, { authorization: basicAuth('cim', cimSecret!) });
      expect(response.status).toBe(200);
      const tokens = await response.json() as { access_token: string; scope: string };
      const claims = decode(tokens.access_token);
      const audiences = [claims.aud].flat();
      expect(audiences).toContain('cim');
      expect(String(claims.scope).split(' ')).toEqual(expect.arrayContaining(['email', 'profile']));
      expect(tokens.scope.split(' ')).toEqual(expect.arrayContaining(['email', 'profile']));
      expect((claims.realm_access as { roles: string[] }).roles).toEqual(expect.arrayContaining(['customer', 'offline_access', 'uma_authorization']));
      expect(claims).toMatchObject({ preferred_username: 'customer', email: 'customer@example.com', email_verified: true, azp: 'cim' });

      // APISIX with bearer_only checks the token by introspection with cim's credentials.
      const introspection = await postForm(`${tokenEndpoint}/introspect`, { token: tokens.access_token }, { authorization: basicAuth('cim', cimSecret!) });
      expect(await introspection.json()).toMatchObject({ active: true, azp: 'cim', username: 'customer' });
    } finally {
      admin.setConfig({ realmName: 'master' });
    }
  });
});
