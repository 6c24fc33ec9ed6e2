// An Admin API test bench: a real server with a bootstrap admin, the official
// @keycloak/keycloak-admin-client logged in as that admin, and helpers to make realm admins with
// chosen realm-management roles (for permission tests).
import crypto from 'node:crypto';

import KcAdminClient from '@keycloak/keycloak-admin-client';

import { postForm, startTestServer, type TestServer, type TestServerOptions } from './server.ts';

export type AdminBench = {
  server: TestServer;
  /** The admin client, logged in to master as the bootstrap admin. */
  admin: KcAdminClient;
  adminUsername: string;
  adminPassword: string;
  /** A new admin client logged in as `username` of `realm` through admin-cli. */
  clientFor(realm: string, username: string, password: string): Promise<KcAdminClient>;
  /** Creates a user in `realm` holding the given realm-management roles and logs it in. */
  realmAdmin(realm: string, roles: string[]): Promise<KcAdminClient>;
  /** Raw fetch against {server}/admin/realms..., with the bootstrap admin's token. */
  api(path: string, init?: RequestInit & { token?: string }): Promise<Response>;
  stop(): Promise<void>;
};

export async function startAdminBench(options: TestServerOptions = {}): Promise<AdminBench> {
  const adminUsername = 'admin';
  const adminPassword = crypto.randomBytes(12).toString('base64url');
  const server = await startTestServer({
    ...options,
    env: { KC_BOOTSTRAP_ADMIN_USERNAME: adminUsername, KC_BOOTSTRAP_ADMIN_PASSWORD: adminPassword, ...options.env },
  });
  const clientFor = async (realm: string, username: string, password: string): Promise<KcAdminClient> => {
    const client = new KcAdminClient({ baseUrl: server.url, realmName: realm });
    await client.auth({ grantType: 'password', clientId: 'admin-cli', username, password });
    return client;
  };
  const admin = await clientFor('master', adminUsername, adminPassword);
  return {
    server, admin, adminUsername, adminPassword, clientFor,
    async realmAdmin(realm, roles) {
      const username = `admin-${crypto.randomBytes(4).toString('hex')}`;
      const password = crypto.randomBytes(12).toString('base64url');
      const { id } = await admin.users.create({
        realm, username, enabled: true, credentials: [{ type: 'password', value: password, temporary: false }],
      });
      const [management] = await admin.clients.find({ realm, clientId: 'realm-management' });
      if (roles.length > 0) {
        const available = await admin.clients.listRoles({ realm, id: management!.id! });
        const wanted = available.filter((r) => roles.includes(r.name!));
        await admin.users.addClientRoleMappings({ realm, id, clientUniqueId: management!.id!, roles: wanted.map((r) => ({ id: r.id!, name: r.name! })) });
      }
      return clientFor(realm, username, password);
    },
    async api(path, init = {}) {
      const token = init.token ?? await admin.getAccessToken();
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${token}`);
      if (init.body && !headers.has('content-type')) headers.set('content-type', 'application/json');
      return fetch(`${server.url}/admin/realms${path}`, { ...init, headers });
    },
    stop: () => server.stop(),
  };
}

/** A password-grant access token (for tests that call the API without the admin client). */
export async function passwordToken(serverUrl: string, realm: string, username: string, password: string, clientId = 'admin-cli'): Promise<string> {
  const response = await postForm(`${serverUrl}/realms/${realm}/protocol/openid-connect/token`, { grant_type: 'password', client_id: clientId, username, password });
  const body = await response.json() as { access_token?: string; error?: string };
  if (!body.access_token) throw new Error(`password grant failed: ${JSON.stringify(body)}`);
  return body.access_token;
}
