// Whether a URL's host is this machine: the one place plain http may carry credentials
// (upstream identity providers, the SMTP token endpoint).

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || /^127(?:\.\d{1,3}){3}$/.test(host) || host === '::1';
}
