import type { Logger } from 'pino';
import { DigestSession, parseChallenges, pickDigest, usernameToken } from './auth.js';
import { OnvifError, type SoapFault } from './errors.js';
import { post } from './http.js';
import { decodeFault, envelope, isAuthFault, isUnsupportedFault, NS, soapBody } from './soap.js';
import { child, childrenNamed, escapeXml, path, textAt, type XmlElement } from './xml.js';

export interface OnvifDeviceOptions {
  /** `http://host[:port]/onvif/device_service`, or `host[:port]` (then that path on http). */
  address: string;
  user?: string;
  password?: string;
  /** Deadline of one request, whole exchange (default 5000). */
  timeoutMs?: number;
  /** Largest answer accepted before the request is aborted (default 2 MiB). */
  maxResponseBytes?: number;
  log?: Logger;
}

export interface DeviceInformation {
  manufacturer?: string;
  model?: string;
  firmwareVersion?: string;
  serialNumber?: string;
  hardwareId?: string;
}

/** Service addresses, rebased onto the host we reached the camera at. */
export interface ServiceAddresses {
  device: string;
  media?: string;
  media2?: string;
  ptz?: string;
  events?: string;
}

export interface Profile {
  token: string;
  name: string;
  /** 'H264', 'H265', 'JPEG', 'MPEG4' as the camera says it (upper-cased). */
  encoding?: string;
  width?: number;
  height?: number;
  /** The profile has a PTZ configuration (the camera can be moved through it). */
  ptz: boolean;
}

export interface PtzVector {
  pan?: number;
  tilt?: number;
  zoom?: number;
}

export interface Preset {
  token: string;
  name: string;
  position?: PtzVector;
}

export type MoveState = 'IDLE' | 'MOVING' | 'UNKNOWN';

export interface PtzStatus {
  /** Absent when the camera does not report it (it is optional in the PTZ spec). */
  moveStatus?: { panTilt?: MoveState; zoom?: MoveState };
  position?: PtzVector;
  error?: string;
}

export interface ArriveOptions {
  /** Give up after this long (default 20000): resolves with arrived false. */
  timeoutMs?: number;
  /** Largest difference per axis between preset and position counted as arrived (default 0.01, in ONVIF's -1..1). */
  tolerance?: number;
  /** Never report arrival before this long; the whole wait when the camera reports neither state nor position (default 2000). */
  minSettleMs?: number;
  /** Between GetStatus calls (default 250). */
  pollMs?: number;
}

export interface Arrival {
  arrived: boolean;
  /** What told us: the camera's MoveStatus, its Position, or only the elapsed time. */
  by: 'move-status' | 'position' | 'time';
  elapsedMs: number;
}

type AuthMode = 'none' | 'wsse' | 'digest';

const DEFAULT_PATH = '/onvif/device_service';

/**
 * One ONVIF camera. Reads the camera's clock first (unauthenticated), signs WS-Security tokens in the camera's time,
 * falls back to HTTP Digest when the camera asks for it or refuses WS-Security, and remembers what worked. Every
 * method settles within its timeout with a result or an OnvifError naming the camera.
 */
export class OnvifDevice {
  readonly url: URL;
  /** host:port, as every message names the camera. */
  readonly camera: string;
  private readonly user?: string;
  private readonly password?: string;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly log?: Logger;
  private offsetMs: number | undefined;
  private mode: AuthMode;
  private digest: DigestSession | undefined;
  private servicesCache: ServiceAddresses | undefined;

  constructor(opts: OnvifDeviceOptions) {
    this.url = parseAddress(opts.address);
    this.camera = `${this.url.hostname.includes(':') ? `[${this.url.hostname}]` : this.url.hostname}:${this.url.port || (this.url.protocol === 'https:' ? 443 : 80)}`;
    this.user = opts.user || undefined;
    this.password = opts.password ?? '';
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxBytes = opts.maxResponseBytes ?? 2 * 1024 * 1024;
    this.log = opts.log;
    this.mode = this.user ? 'wsse' : 'none';
  }

  /** Which authentication the camera accepted last ('none' before any authenticated call or without a user). */
  get authMode(): AuthMode {
    return this.mode;
  }

  /** Camera clock minus ours, in ms (undefined before the first GetSystemDateAndTime). */
  get clockOffsetMs(): number | undefined {
    return this.offsetMs;
  }

  /** Reads the camera's clock without authentication and keeps its offset from ours for signing. */
  async getSystemDateAndTime(): Promise<{ utc: Date; offsetMs: number }> {
    const before = Date.now();
    let r: XmlElement;
    try {
      r = await this.call(this.url, NS.tds, 'GetSystemDateAndTime', '<tds:GetSystemDateAndTime/>', false);
    } catch (err) {
      // A few stacks protect even the clock: ask again signed with our own time, which is all we have.
      if (!(err instanceof OnvifError) || err.kind !== 'auth' || !this.user) throw err;
      this.offsetMs ??= 0;
      r = await this.call(this.url, NS.tds, 'GetSystemDateAndTime', '<tds:GetSystemDateAndTime/>');
    }
    const after = Date.now();
    const sdt = child(r, 'SystemDateAndTime');
    const dt = path(sdt, 'UTCDateTime') ?? path(sdt, 'LocalDateTime');
    const n = (...p: string[]): number => Number(textAt(dt, ...p));
    const [y, mo, d, h, mi, s] = [
      n('Date', 'Year'),
      n('Date', 'Month'),
      n('Date', 'Day'),
      n('Time', 'Hour'),
      n('Time', 'Minute'),
      n('Time', 'Second'),
    ];
    const valid =
      [y, mo, d, h, mi, s].every(Number.isInteger) && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && s <= 60;
    if (!valid) throw this.malformed('GetSystemDateAndTime has no valid date and time');
    const utc = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
    this.offsetMs = utc.getTime() - Math.round((before + after) / 2);
    return { utc, offsetMs: this.offsetMs };
  }

  async getDeviceInformation(): Promise<DeviceInformation> {
    const r = await this.call(this.url, NS.tds, 'GetDeviceInformation', '<tds:GetDeviceInformation/>');
    return {
      manufacturer: textAt(r, 'Manufacturer'),
      model: textAt(r, 'Model'),
      firmwareVersion: textAt(r, 'FirmwareVersion'),
      serialNumber: textAt(r, 'SerialNumber'),
      hardwareId: textAt(r, 'HardwareId'),
    };
  }

  /** GetCapabilities (ver10, what old cameras know). */
  async getCapabilities(): Promise<ServiceAddresses> {
    const r = await this.call(
      this.url,
      NS.tds,
      'GetCapabilities',
      '<tds:GetCapabilities><tds:Category>All</tds:Category></tds:GetCapabilities>',
    );
    const caps = child(r, 'Capabilities');
    const x = (...p: string[]): string | undefined => this.rebase(textAt(caps, ...p, 'XAddr'));
    return {
      device: x('Device') ?? this.url.href,
      media: x('Media'),
      media2: x('Extension', 'Media2') ?? x('Media2'),
      ptz: x('PTZ'),
      events: x('Events'),
    };
  }

  /** GetServices (newer, required since Profile S 2.x); the namespace of each service says what it is. */
  async getServices(): Promise<ServiceAddresses> {
    const r = await this.call(
      this.url,
      NS.tds,
      'GetServices',
      '<tds:GetServices><tds:IncludeCapability>false</tds:IncludeCapability></tds:GetServices>',
    );
    const out: ServiceAddresses = { device: this.url.href };
    const names: Record<string, keyof ServiceAddresses> = {
      [NS.tds]: 'device',
      [NS.trt]: 'media',
      [NS.tr2]: 'media2',
      [NS.tptz]: 'ptz',
      [NS.tev]: 'events',
    };
    for (const s of childrenNamed(r, 'Service')) {
      const key = names[textAt(s, 'Namespace') ?? ''];
      const addr = this.rebase(textAt(s, 'XAddr'));
      if (key && addr) out[key] = addr;
    }
    return out;
  }

  /** The service addresses, from GetServices or else GetCapabilities, read once. */
  async services(): Promise<ServiceAddresses> {
    if (this.servicesCache) return this.servicesCache;
    let s: ServiceAddresses;
    try {
      s = await this.getServices();
    } catch (err) {
      if (!(err instanceof OnvifError) || (err.kind !== 'fault' && err.kind !== 'unsupported')) throw err;
      s = await this.getCapabilities();
    }
    this.servicesCache = s;
    return s;
  }

  async getProfiles(): Promise<Profile[]> {
    const r = await this.call(await this.mediaUrl(), NS.trt, 'GetProfiles', '<trt:GetProfiles/>');
    return childrenNamed(r, 'Profiles').flatMap((p) => {
      const token = p.attrs.token;
      if (!token) return [];
      const vec = child(p, 'VideoEncoderConfiguration');
      const width = Number(textAt(vec, 'Resolution', 'Width'));
      const height = Number(textAt(vec, 'Resolution', 'Height'));
      return [
        {
          token,
          name: textAt(p, 'Name') ?? token,
          encoding: textAt(vec, 'Encoding')?.toUpperCase(),
          width: width > 0 ? width : undefined,
          height: height > 0 ? height : undefined,
          ptz: child(p, 'PTZConfiguration') !== undefined,
        },
      ];
    });
  }

  /** The RTSP URI of a profile (RTP-Unicast over RTSP), rebased onto the host we reached the camera at. */
  async getStreamUri(profileToken: string): Promise<string> {
    const body =
      '<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>' +
      `<trt:ProfileToken>${escapeXml(profileToken)}</trt:ProfileToken></trt:GetStreamUri>`;
    return this.mediaUri(await this.call(await this.mediaUrl(), NS.trt, 'GetStreamUri', body), 'GetStreamUri');
  }

  async getSnapshotUri(profileToken: string): Promise<string> {
    const body = `<trt:GetSnapshotUri><trt:ProfileToken>${escapeXml(profileToken)}</trt:ProfileToken></trt:GetSnapshotUri>`;
    return this.mediaUri(await this.call(await this.mediaUrl(), NS.trt, 'GetSnapshotUri', body), 'GetSnapshotUri');
  }

  async getPresets(profileToken: string): Promise<Preset[]> {
    const r = await this.call(await this.ptzUrl(), NS.tptz, 'GetPresets', `<tptz:GetPresets>${profile(profileToken)}</tptz:GetPresets>`);
    return childrenNamed(r, 'Preset').flatMap((p) => {
      const token = p.attrs.token;
      if (!token) return [];
      return [{ token, name: textAt(p, 'Name') ?? token, position: vector(child(p, 'PTZPosition')) }];
    });
  }

  /** Starts the move to a preset; the camera answers at once (use waitUntilArrived). Speed 0..1 on every axis. */
  async gotoPreset(profileToken: string, presetToken: string, opts: { speed?: number } = {}): Promise<void> {
    const body = `<tptz:GotoPreset>${profile(profileToken)}<tptz:PresetToken>${escapeXml(presetToken)}</tptz:PresetToken>${speed(opts.speed)}</tptz:GotoPreset>`;
    await this.call(await this.ptzUrl(), NS.tptz, 'GotoPreset', body);
  }

  /** Saves the current position as a preset (a new one, or `presetToken` overwritten); returns its token. */
  async setPreset(profileToken: string, opts: { name?: string; presetToken?: string } = {}): Promise<string> {
    const body =
      `<tptz:SetPreset>${profile(profileToken)}` +
      `${opts.name !== undefined ? `<tptz:PresetName>${escapeXml(opts.name)}</tptz:PresetName>` : ''}` +
      `${opts.presetToken !== undefined ? `<tptz:PresetToken>${escapeXml(opts.presetToken)}</tptz:PresetToken>` : ''}</tptz:SetPreset>`;
    const r = await this.call(await this.ptzUrl(), NS.tptz, 'SetPreset', body);
    const token = textAt(r, 'PresetToken') ?? opts.presetToken;
    if (!token) throw this.malformed('SetPreset returned no PresetToken');
    return token;
  }

  async gotoHomePosition(profileToken: string, opts: { speed?: number } = {}): Promise<void> {
    await this.call(
      await this.ptzUrl(),
      NS.tptz,
      'GotoHomePosition',
      `<tptz:GotoHomePosition>${profile(profileToken)}${speed(opts.speed)}</tptz:GotoHomePosition>`,
    );
  }

  async getStatus(profileToken: string): Promise<PtzStatus> {
    const r = await this.call(await this.ptzUrl(), NS.tptz, 'GetStatus', `<tptz:GetStatus>${profile(profileToken)}</tptz:GetStatus>`);
    const st = child(r, 'PTZStatus');
    if (!st) throw this.malformed('GetStatus returned no PTZStatus');
    const ms = child(st, 'MoveStatus');
    let moveStatus: PtzStatus['moveStatus'];
    if (ms) {
      // ONVIF 2.x has PanTilt and Zoom children; some 1.x stacks put the state directly in MoveStatus.
      const panTilt = moveState(textAt(ms, 'PanTilt') ?? (ms.children.length === 0 ? ms.text : undefined));
      const zoom = moveState(textAt(ms, 'Zoom'));
      if (panTilt || zoom) moveStatus = { panTilt, zoom };
    }
    return { moveStatus, position: vector(child(st, 'Position')), error: textAt(st, 'Error') };
  }

  /**
   * Waits until the camera has reached a preset: by MoveStatus IDLE when it reports one, else by its Position
   * within `tolerance` of the preset's, else after `minSettleMs`. Never earlier than `minSettleMs` (cameras report
   * IDLE for a moment before they start). Resolves arrived false at `timeoutMs`.
   */
  async waitUntilArrived(profileToken: string, presetToken: string, opts: ArriveOptions = {}): Promise<Arrival> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const tolerance = opts.tolerance ?? 0.01;
    const minSettleMs = Math.min(opts.minSettleMs ?? 2000, timeoutMs);
    const pollMs = opts.pollMs ?? 250;
    const start = Date.now();
    const elapsed = (): number => Date.now() - start;
    let target: PtzVector | undefined;
    try {
      target = (await this.getPresets(profileToken)).find((p) => p.token === presetToken)?.position;
    } catch (err) {
      if (!(err instanceof OnvifError) || err.kind === 'auth') throw err;
    }
    let by: Arrival['by'] = 'time';
    while (elapsed() < timeoutMs) {
      let status: PtzStatus | undefined;
      try {
        status = await this.getStatus(profileToken);
      } catch (err) {
        if (!(err instanceof OnvifError) || err.kind === 'auth') throw err;
        this.log?.debug({ camera: this.camera, err: err.message }, 'onvif: GetStatus failed while waiting; falling back to time');
      }
      const states = [status?.moveStatus?.panTilt, status?.moveStatus?.zoom].filter((s) => s !== undefined && s !== 'UNKNOWN');
      let done: boolean;
      if (states.length > 0) {
        by = 'move-status';
        done = states.every((s) => s === 'IDLE');
      } else if (status?.position && target) {
        by = 'position';
        done = near(status.position, target, tolerance);
      } else {
        by = 'time';
        done = true;
      }
      if (done && elapsed() >= minSettleMs) return { arrived: true, by, elapsedMs: elapsed() };
      const wait = done ? minSettleMs - elapsed() : pollMs;
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(wait, timeoutMs - elapsed()))));
    }
    return { arrived: false, by, elapsedMs: elapsed() };
  }

  private async mediaUrl(): Promise<URL> {
    const s = await this.services();
    return new URL(s.media ?? s.device);
  }

  private async ptzUrl(): Promise<URL> {
    const s = await this.services();
    if (!s.ptz) throw new OnvifError('unsupported', this.camera, `camera ${this.camera} has no PTZ service; it cannot be moved to presets`);
    return new URL(s.ptz);
  }

  private mediaUri(r: XmlElement, op: string): string {
    const uri = this.rebase(textAt(r, 'MediaUri', 'Uri') ?? textAt(r, 'Uri'));
    if (!uri) throw this.malformed(`${op} returned no Uri`);
    return uri;
  }

  /**
   * An address the camera gave us, with its host replaced by the one we reached the camera at (cameras behind NAT
   * or with several interfaces advertise an address we cannot use); scheme, port and path are kept.
   */
  private rebase(addr: string | undefined): string | undefined {
    if (!addr) return undefined;
    for (const candidate of addr.split(/\s+/)) {
      let u: URL;
      try {
        u = new URL(candidate);
      } catch {
        continue;
      }
      if (!/^(https?|rtsp|rtsps):$/.test(u.protocol)) continue;
      u.hostname = this.url.hostname;
      return u.href;
    }
    return undefined;
  }

  private malformed(why: string): OnvifError {
    return new OnvifError(
      'malformed',
      this.camera,
      `camera ${this.camera} sent a malformed answer (${why}); check the camera's firmware or ONVIF settings`,
    );
  }

  /**
   * One SOAP call: the response element `${op}Response` in namespace `ns`, or an OnvifError. Handles the
   * authentication dance: WS-Security signed in camera time; on NotAuthorized re-read the clock and retry once; then
   * HTTP Digest on a 401 challenge (stale nonces renewed once).
   */
  private async call(url: URL, ns: string, op: string, body: string, auth = true): Promise<XmlElement> {
    if (auth && this.mode === 'wsse' && this.offsetMs === undefined) await this.getSystemDateAndTime();
    let resynced = false;
    let triedDigest = false;
    let staleRetried = false;
    let mode: AuthMode = auth ? this.mode : 'none';
    for (let attempt = 0; attempt < 6; attempt++) {
      const headers: Record<string, string> = { 'Content-Type': `application/soap+xml; charset=utf-8; action="${ns}/${op}"` };
      let header = '';
      if (mode === 'wsse') header = usernameToken(this.user!, this.password!, new Date(Date.now() + (this.offsetMs ?? 0)));
      const sentDigest = mode === 'digest' && this.digest !== undefined;
      if (sentDigest) headers.Authorization = this.digest!.authorization(this.user!, this.password!, 'POST', url.pathname + url.search);
      const answer = await post(url, envelope(body, header), {
        camera: this.camera,
        timeoutMs: this.timeoutMs,
        maxBytes: this.maxBytes,
        headers,
      });

      if (answer.status === 401) {
        const challenge = pickDigest(parseChallenges(answer.challenges));
        if (!this.user) throw this.authError(op, 'it requires a user and password');
        if (!challenge) {
          const basic = parseChallenges(answer.challenges).some((c) => c.scheme === 'basic');
          throw basic && url.protocol === 'http:'
            ? new OnvifError(
                'unsupported',
                this.camera,
                `camera ${this.camera} offers only Basic authentication over plain HTTP, which would send the password in clear; enable Digest or WS-Security on the camera`,
              )
            : this.authError(op, 'it answered 401 without a usable Digest challenge');
        }
        const stale = challenge.params.stale?.toLowerCase() === 'true';
        if (sentDigest && !(stale && !staleRetried)) throw this.authError(op, 'it rejected HTTP Digest');
        if (stale) staleRetried = true;
        this.digest = new DigestSession(challenge);
        mode = 'digest';
        triedDigest = true;
        continue;
      }

      const soap = soapBody(answer.body, this.camera);
      const faultEl = child(soap, 'Fault');
      if (faultEl) {
        const fault = decodeFault(faultEl);
        if (isAuthFault(fault) && mode !== 'none') {
          if (mode === 'wsse' && !resynced) {
            // The camera's clock may have jumped (a reboot resets it): re-read it and sign again.
            resynced = true;
            await this.getSystemDateAndTime();
            continue;
          }
          if (mode === 'wsse' && !triedDigest) {
            // WS-Security refused: ask without it, expecting a Digest challenge.
            triedDigest = true;
            mode = 'digest';
            this.digest = undefined;
            continue;
          }
          throw this.authError(op, 'it refused the credentials', fault);
        }
        if (isAuthFault(fault)) throw this.authError(op, 'it requires authentication', fault);
        throw this.faultError(op, fault);
      }
      if (answer.status >= 300) {
        throw new OnvifError(
          'malformed',
          this.camera,
          `camera ${this.camera} answered ${op} with HTTP ${answer.status} and no SOAP fault; check the address is its ONVIF service`,
        );
      }
      const resp = soap.children.find((c) => c.name === `${op}Response`);
      if (!resp) throw this.malformed(`no ${op}Response in the body`);
      if (resp.ns !== ns) throw this.malformed(`${op}Response in namespace "${resp.ns}", expected "${ns}"`);
      if (auth && this.user && mode !== this.mode) {
        this.log?.info({ camera: this.camera, auth: mode }, 'onvif: camera accepted another authentication; using it from now on');
        this.mode = mode;
      }
      return resp;
    }
    throw this.authError(op, 'the authentication exchange did not settle');
  }

  private authError(op: string, why: string, fault?: SoapFault): OnvifError {
    return new OnvifError(
      'auth',
      this.camera,
      `authentication failed for camera ${this.camera} on ${op}: ${why} (check --user/--password-file)`,
      fault,
    );
  }

  private faultError(op: string, fault: SoapFault): OnvifError {
    const kind = isUnsupportedFault(fault) ? 'unsupported' : 'fault';
    const what = [fault.code, ...fault.subcodes].filter(Boolean).join('/');
    const reason = fault.reason ? `: ${fault.reason.slice(0, 200)}` : '';
    const todo =
      kind === 'unsupported' ? 'the camera does not support it' : 'check the request against the camera (profile and preset tokens)';
    return new OnvifError(kind, this.camera, `camera ${this.camera} refused ${op} (${what}${reason}); ${todo}`, fault);
  }
}

function parseAddress(address: string): URL {
  const a = address.trim();
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(a) ? a : `http://${a}`);
  } catch {
    throw new OnvifError(
      'unreachable',
      address,
      `"${address}" is not a camera address; give host[:port] or http://host[:port]/onvif/device_service`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new OnvifError(
      'unreachable',
      address,
      `"${address}" is not an ONVIF address (http or https only); give host[:port] or http://host[:port]/onvif/device_service`,
    );
  }
  if (u.username || u.password)
    throw new OnvifError('unreachable', u.host, 'give the camera user and password as options, not inside the address');
  if (u.pathname === '/' || u.pathname === '') u.pathname = DEFAULT_PATH;
  return u;
}

function profile(token: string): string {
  return `<tptz:ProfileToken>${escapeXml(token)}</tptz:ProfileToken>`;
}

function speed(s: number | undefined): string {
  if (s === undefined) return '';
  const v = Math.max(0, Math.min(1, s));
  return `<tptz:Speed><tt:PanTilt x="${v}" y="${v}"/><tt:Zoom x="${v}"/></tptz:Speed>`;
}

function vector(el: XmlElement | undefined): PtzVector | undefined {
  if (!el) return undefined;
  const num = (v: string | undefined): number | undefined => {
    const n = v === undefined || v === '' ? Number.NaN : Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const pt = child(el, 'PanTilt');
  const z = child(el, 'Zoom');
  const v: PtzVector = { pan: num(pt?.attrs.x), tilt: num(pt?.attrs.y), zoom: num(z?.attrs.x) };
  return v.pan === undefined && v.tilt === undefined && v.zoom === undefined ? undefined : v;
}

function moveState(s: string | undefined): MoveState | undefined {
  const u = s?.trim().toUpperCase();
  return u === 'IDLE' || u === 'MOVING' || u === 'UNKNOWN' ? u : undefined;
}

function near(a: PtzVector, b: PtzVector, tol: number): boolean {
  return (['pan', 'tilt', 'zoom'] as const).every((k) => a[k] === undefined || b[k] === undefined || Math.abs(a[k]! - b[k]!) <= tol);
}
