// Prometheus metrics on a private registry (several servers in one test process stay apart).
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  tokensIssued: Counter<'realm' | 'grant_type'>;
};

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    httpRequests: new Counter({
      name: 'cloakroom_http_requests_total', help: 'HTTP requests by route template and status',
      labelNames: ['method', 'route', 'status'], registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'cloakroom_http_request_duration_seconds', help: 'HTTP request duration by route template',
      labelNames: ['method', 'route', 'status'], registers: [registry],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    }),
    tokensIssued: new Counter({
      name: 'cloakroom_tokens_issued_total', help: 'Tokens issued by realm and grant type',
      labelNames: ['realm', 'grant_type'], registers: [registry],
    }),
  };
}
