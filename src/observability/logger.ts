import pino, { type Logger } from 'pino';

export type { Logger };

/** JSON logs. Secrets never reach here: log client ids and token ids (jti), never values. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'cloakroom' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Defence in depth for anything that slips into a log object by mistake.
    redact: {
      paths: ['password', 'client_secret', 'secret', 'token', 'access_token', 'refresh_token', 'id_token',
        'code', 'authorization', '*.password', '*.client_secret', '*.secret', '*.token', '*.authorization',
        'req.headers.authorization', 'req.headers.cookie'],
      censor: '[redacted]',
    },
  });
}
