// Allowed client IP ranges of a login authenticator: CIDR blocks or single addresses, IPv4 and
// IPv6. An IPv4-mapped IPv6 address (::ffff:10.0.0.1, what a dual-stack socket reports for an
// IPv4 client) is the same client as its IPv4 address, whichever side spells it that way.
import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Block = { address: Address; bits: number };

/** Strict forms only: ipaddr.js would also take "10.1" or "0x7f.1" as IPv4, nobody means those in a config. */
function parseAddress(text: string): Address | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return undefined;
}

/** A range as written in the settings, or undefined when it is not one. */
export function parseIpRange(range: string): Block | undefined {
  const [addressText = '', bitsText, ...rest] = range.trim().split('/');
  if (rest.length > 0) return undefined;
  const address = parseAddress(addressText);
  if (!address) return undefined;
  const max = address.kind() === 'ipv4' ? 32 : 128;
  if (bitsText === undefined) return { address, bits: max };
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  return bits <= max ? { address, bits } : undefined;
}

export function isValidIpRange(range: string): boolean {
  return parseIpRange(range) !== undefined;
}

function inBlock(client: Address, block: Block): boolean {
  if (client.kind() === block.address.kind()) return client.match(block.address, block.bits);
  // An IPv4 client against an IPv6 block (::ffff:10.0.0.0/104, ::/0): compare its mapped form.
  return client.kind() === 'ipv4' && (client as ipaddr.IPv4).toIPv4MappedAddress().match(block.address, block.bits);
}

/**
 * Whether a client address may log in under these ranges (empty = from anywhere). Unreadable
 * ranges match nothing and an unreadable client address matches no range: a broken setting
 * never opens the door wider.
 */
export function ipAllowed(ranges: string[], ip: string): boolean {
  if (ranges.length === 0) return true;
  const parsed = typeof ip === 'string' ? parseAddress(ip.trim()) : undefined;
  if (!parsed) return false;
  const client = parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress() ? (parsed as ipaddr.IPv6).toIPv4Address() : parsed;
  return ranges.some((range) => {
    const block = parseIpRange(range);
    return block !== undefined && inBlock(client, block);
  });
}
