// Baseline for the benchmark: plain oidc-provider with its in-memory adapter, doing the same
// client_credentials work as Cloakroom (RS256 JWT access tokens from a 2048-bit RSA key).
// Usage: node bench/bare-provider.ts --port <port> [--format jwt|opaque]
// `opaque` exists because oidc-provider refuses to introspect JWT access tokens.
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    format: { type: 'string', default: 'jwt' },
  },
});
const port = Number.parseInt(values.port ?? '', 10);
const format = values.format;
if (!Number.isInteger(port) || port <= 0) throw new Error('--port <port> is required');
if (format !== 'jwt' && format !== 'opaque') throw new Error('--format must be jwt or opaque');

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'RS256' };

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    { client_id: 'bench-cc', client_secret: 'bench-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] },
    { client_id: 'gateway', client_secret: 'gateway-secret', grant_types: [], redirect_uris: [], response_types: [] },
  ],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: '',
        audience: 'bench',
        accessTokenFormat: format,
        accessTokenTTL: 300,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});

const server = http.createServer(provider.callback());
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`bare oidc-provider (${format} access tokens) listening on ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
