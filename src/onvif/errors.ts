/**
 * The one error of the ONVIF client. `kind` says what went wrong, the message names the camera (host:port) and what
 * to do; neither ever carries a password, nonce or digest.
 */
export type OnvifErrorKind = 'auth' | 'timeout' | 'unreachable' | 'fault' | 'malformed' | 'unsupported';

/** A decoded SOAP fault: the code, its subcode chain (local names, outermost first) and the reason text. */
export interface SoapFault {
  code: string;
  subcodes: string[];
  reason: string;
}

export class OnvifError extends Error {
  override readonly name = 'OnvifError';
  constructor(
    readonly kind: OnvifErrorKind,
    /** host:port of the camera, or what was being talked to ("discovery on eth0"). */
    readonly camera: string,
    message: string,
    readonly fault?: SoapFault,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** "5 s", "0.3 s": a timeout as a technician reads it. */
export function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
