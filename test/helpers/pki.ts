import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A CA, a server certificate for localhost/127.0.0.1 (serverAuth) and a client certificate whose CN is `clientCn`
 * (clientAuth), EC P-256 keys (mode 600), made with openssl in `dir`, every file named `<name>-…`.
 */
export function makePki(dir: string, name = 'test', clientCn = 'gw-test-01') {
  const p = (file: string) => join(dir, `${name}-${file}`);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ecKey, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', `/CN=${name} test CA`);
  writeFileSync(p('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [who, cn] of [
    ['server', 'localhost'],
    ['client', clientCn],
  ] as const) {
    openssl('req', ...ecKey, '-keyout', p(`${who}.key`), '-out', p(`${who}.csr`), '-subj', `/CN=${cn}`);
    openssl(
      'x509',
      '-req',
      '-in',
      p(`${who}.csr`),
      '-CA',
      p('ca.crt'),
      '-CAkey',
      p('ca.key'),
      '-CAcreateserial',
      '-out',
      p(`${who}.crt`),
      '-days',
      '2',
      '-extfile',
      p(`${who}.ext`),
    );
    chmodSync(p(`${who}.key`), 0o600);
  }
  const read = (file: string) => readFileSync(p(file));
  return {
    ca: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    caPem: () => read('ca.crt'),
    clientPem: () => ({ cert: read('client.crt'), key: read('client.key') }),
  };
}
