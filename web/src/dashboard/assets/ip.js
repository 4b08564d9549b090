// Addresses as numbers, to tell whether a blocked network covers an address and to check
// an address typed or taken from the URL before it goes to the API. The API gives
// addresses in canonical form (IPv4-mapped IPv6 as IPv4), so the two families never mix.
"use strict";

function parseIpv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) < 256)) return null;
  return parts.reduce((n, p) => (n << 8n) | BigInt(p), 0n);
}

function parseIpv6(text) {
  if (text.length > 45) return null;
  const groups = text.split("::");
  if (groups.length > 2) return null;
  const side = (t) => (t === "" ? [] : t.split(":"));
  const head = side(groups[0]);
  const tail = groups.length === 2 ? side(groups[1]) : [];
  const last = (tail.length ? tail : head);
  if (last.length && last[last.length - 1].includes(".")) {
    const v4 = parseIpv4(last.pop());
    if (v4 === null) return null;
    last.push((v4 >> 16n).toString(16), (v4 & 0xffffn).toString(16));
  }
  const missing = 8 - head.length - tail.length;
  if (groups.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = head.concat(Array(groups.length === 2 ? missing : 0).fill("0"), tail);
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  return all.reduce((n, g) => (n << 16n) | BigInt("0x" + g), 0n);
}

/// `{bits, value}` for an IPv4 or IPv6 address, or null.
export function parseAddress(text) {
  if (typeof text !== "string") return null;
  if (text.includes(":")) {
    const value = parseIpv6(text);
    return value === null ? null : { bits: 128, value };
  }
  const value = parseIpv4(text);
  return value === null ? null : { bits: 32, value };
}

/// `{bits, value, prefix}` for `addr/prefix`, or null.
export function parseNetwork(text) {
  if (typeof text !== "string") return null;
  const [addr, prefixText, extra] = text.split("/");
  if (extra !== undefined || prefixText === undefined || !/^[0-9]{1,3}$/.test(prefixText)) return null;
  const ip = parseAddress(addr);
  const prefix = Number(prefixText);
  if (ip === null || prefix > ip.bits) return null;
  return { ...ip, prefix };
}

/// The blocked entry (an address or a network) that covers `address`, or undefined.
export function coveringBlock(blocked, address) {
  const ip = parseAddress(address);
  if (ip === null) return undefined;
  return blocked.find((b) => {
    const [net, prefixText] = b.ip_address.split("/");
    const network = parseAddress(net);
    if (network === null || network.bits !== ip.bits) return false;
    const prefix = prefixText === undefined ? ip.bits : Number(prefixText);
    const shift = BigInt(ip.bits - prefix);
    return (network.value >> shift) === (ip.value >> shift);
  });
}
