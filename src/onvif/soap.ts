import { OnvifError, type SoapFault } from './errors.js';
import { child, childrenNamed, parseXml, textAt, type XmlElement } from './xml.js';

/** SOAP envelopes: what we send (SOAP 1.2, as ONVIF requires) and what we accept (1.2 or 1.1, any prefixes). */
export const SOAP12 = 'http://www.w3.org/2003/05/soap-envelope';
export const SOAP11 = 'http://schemas.xmlsoap.org/soap/envelope/';

export const NS = {
  tds: 'http://www.onvif.org/ver10/device/wsdl',
  trt: 'http://www.onvif.org/ver10/media/wsdl',
  tr2: 'http://www.onvif.org/ver20/media/wsdl',
  tptz: 'http://www.onvif.org/ver20/ptz/wsdl',
  tev: 'http://www.onvif.org/ver10/events/wsdl',
  tt: 'http://www.onvif.org/ver10/schema',
} as const;

export function envelope(body: string, header = ''): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="${SOAP12}" xmlns:tds="${NS.tds}" xmlns:trt="${NS.trt}"` +
    ` xmlns:tptz="${NS.tptz}" xmlns:tt="${NS.tt}">${header ? `<s:Header>${header}</s:Header>` : ''}<s:Body>${body}</s:Body></s:Envelope>`
  );
}

/** The Body of an envelope, 1.2 or 1.1; 'malformed' when the root is not a SOAP envelope or has no body. */
export function soapBody(text: string, camera: string): XmlElement {
  const root = parseXml(text, camera);
  if (root.name !== 'Envelope' || (root.ns !== SOAP12 && root.ns !== SOAP11)) {
    throw new OnvifError(
      'malformed',
      camera,
      `camera ${camera} did not answer with a SOAP envelope (got <${root.name}> in namespace "${root.ns}"); check that the address is the camera's ONVIF device service`,
    );
  }
  const body = root.children.find((c) => c.name === 'Body' && c.ns === root.ns);
  if (!body) throw new OnvifError('malformed', camera, `camera ${camera} sent a SOAP envelope without a Body; check the camera's firmware`);
  return body;
}

/** Decodes a Fault element of either SOAP version; subcodes are local names ("NotAuthorized"), outermost first. */
export function decodeFault(fault: XmlElement): SoapFault {
  const localOf = (v: string | undefined): string => (v ?? '').replace(/^.*:/, '').trim();
  const code = child(fault, 'Code');
  if (code) {
    const subcodes: string[] = [];
    let sub = child(code, 'Subcode');
    for (let i = 0; sub && i < 16; i++) {
      subcodes.push(localOf(textAt(sub, 'Value')));
      sub = child(sub, 'Subcode');
    }
    const reasons = childrenNamed(child(fault, 'Reason'), 'Text');
    const reason = (reasons.find((r) => /^en/i.test(r.attrs.lang ?? '')) ?? reasons[0])?.text ?? '';
    return { code: localOf(textAt(code, 'Value')), subcodes: subcodes.filter(Boolean), reason };
  }
  // SOAP 1.1: faultcode "env:Sender" or "SOAP-ENV:Client.ter:NotAuthorized"-style dotted chains, faultstring, detail.
  const [top = '', ...rest] = (textAt(fault, 'faultcode') ?? '').split('.');
  const detailCodes = (textAt(fault, 'detail', 'Code') ?? textAt(fault, 'detail', 'subcode') ?? '').split(/\s+/);
  return {
    code: localOf(top),
    subcodes: [...rest, ...detailCodes].map(localOf).filter(Boolean),
    reason: textAt(fault, 'faultstring') ?? '',
  };
}

/** True for the faults cameras use to say "who are you?": ter:NotAuthorized, wsse:FailedAuthentication and kin. */
export function isAuthFault(f: SoapFault): boolean {
  const words = [f.code, ...f.subcodes];
  return (
    words.some((w) =>
      /^(NotAuthorized|FailedAuthentication|InvalidSecurity|InvalidSecurityToken|FailedCheck|SecurityTokenUnavailable|MessageExpired|Unauthorized)$/i.test(
        w,
      ),
    ) || /not ?authori[sz]ed|authentication fail|unauthori[sz]ed|sender not authori/i.test(f.reason)
  );
}

/** True for faults meaning "this camera does not have that operation". */
export function isUnsupportedFault(f: SoapFault): boolean {
  return (
    [f.code, ...f.subcodes].some((w) =>
      /^(ActionNotSupported|NoSuchService|NotSupported|OperationProhibited|ServiceNotSupported)$/i.test(w),
    ) || /not (supported|implemented)|action not supported|unknown (method|action|operation)/i.test(f.reason)
  );
}
