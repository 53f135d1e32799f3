// A throwaway certificate authority and a loopback server certificate, made with openssl
// (Node can verify certificates but not issue them).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileAsync, requireCommand } from './process.ts';

export interface TestPki {
  readonly dir: string;
  readonly caCertPath: string;
  readonly caKeyPath: string;
  readonly certPath: string;
  readonly keyPath: string;
  /** PEM of the CA certificate, for clients' `ca` option and webhook caBundles. */
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Creates ca.crt/ca.key and a server.crt/server.key for 127.0.0.1, ::1 and localhost in `dir`. */
export async function makePki(
  dir: string,
  commonName = '127.0.0.1',
  /** More DNS names the server certificate is valid for. */
  names: readonly string[] = [],
): Promise<TestPki> {
  const openssl = requireCommand('openssl');
  const p = (name: string): string => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await execFileAsync(openssl, [
    'req',
    '-x509',
    ...ec,
    '-days',
    '7',
    '-subj',
    '/CN=pullmap-test-ca',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
  ]);
  await execFileAsync(openssl, [
    'req',
    ...ec,
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    p('server.key'),
    '-out',
    p('server.csr'),
  ]);
  await writeFile(
    p('san.ext'),
    `subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost${names.map((n) => `,DNS:${n}`).join('')}\n`,
  );
  await execFileAsync(openssl, [
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-days',
    '7',
    '-extfile',
    p('san.ext'),
    '-out',
    p('server.crt'),
  ]);
  const [caPem, certPem, keyPem] = await Promise.all([
    readFile(p('ca.crt'), 'utf8'),
    readFile(p('server.crt'), 'utf8'),
    readFile(p('server.key'), 'utf8'),
  ]);
  return {
    dir,
    caCertPath: p('ca.crt'),
    caKeyPath: p('ca.key'),
    certPath: p('server.crt'),
    keyPath: p('server.key'),
    caPem,
    certPem,
    keyPem,
  };
}
