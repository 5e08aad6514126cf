/**
 * Ed25519 signatures over canonical JSON, for tasks sent to a gateway (docs/decisions/0047-task-inbox.md).
 * Canonical JSON: no white space; object keys sorted by UTF-16 code units (JavaScript's default sort), at every
 * depth; arrays in their order; strings and numbers as JSON.stringify writes them. For the JSON a task carries
 * (strings, integers, booleans, nested objects) this is the same text as RFC 8785 gives.
 */
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    // undefined, functions and symbols have no JSON text; NaN and Infinity would become null.
    if (text === undefined || (typeof value === 'number' && !Number.isFinite(value))) {
      throw new TypeError(`canonicalJson: ${String(value)} has no JSON form`);
    }
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value)
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/** The bytes a task's signature covers: the canonical JSON of the task without its `signature` field. */
export function signedBytes(task: Record<string, unknown>): Buffer {
  const { signature: _signature, ...rest } = task;
  return Buffer.from(canonicalJson(rest), 'utf8');
}

/**
 * An Ed25519 public key from a PEM text (SubjectPublicKeyInfo, "-----BEGIN PUBLIC KEY-----") or the base64 of
 * the raw 32-byte key. Throws an Error saying which form was expected.
 */
export function parsePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  let key: KeyObject;
  if (trimmed.startsWith('-----BEGIN')) {
    try {
      key = createPublicKey(trimmed);
    } catch (err) {
      throw new Error(`not a readable PEM public key (${(err as Error).message})`);
    }
  } else {
    const raw = /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) ? Buffer.from(trimmed, 'base64') : Buffer.alloc(0);
    if (raw.length !== 32) {
      throw new Error('expected a PEM public key or the base64 of a raw 32-byte Ed25519 key (44 characters ending in =)');
    }
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown'} key`);
  return key;
}

/** An Ed25519 private key from a PEM text (PKCS #8, "-----BEGIN PRIVATE KEY-----"). */
export function parsePrivateKey(text: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (err) {
    throw new Error(`not a readable PEM private key (${(err as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`expected an Ed25519 key, got ${key.asymmetricKeyType ?? 'an unknown'} key`);
  return key;
}

/** The task with `signature` set: base64 of the Ed25519 signature over signedBytes(task). */
export function signTask<T extends Record<string, unknown>>(task: T, key: KeyObject): T & { signature: string } {
  return { ...task, signature: sign(null, signedBytes(task), key).toString('base64') };
}

/** Whether `task.signature` is a valid signature of the task by `key`. */
export function verifyTask(task: Record<string, unknown>, key: KeyObject): boolean {
  const sig = task.signature;
  if (typeof sig !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(sig)) return false;
  const bytes = Buffer.from(sig, 'base64');
  if (bytes.length !== 64) return false;
  return verify(null, signedBytes(task), key, bytes);
}
