// skopeo as the reference client for copy tests: what a registry serves, as skopeo reads it.
import { createHash } from 'node:crypto';
import { execFileAsync, requireCommand } from '../harness/process.ts';

/** The digest of the manifest bytes `skopeo inspect --raw` reads for `image`. */
export async function rawDigest(image: string, creds?: string): Promise<string> {
  const skopeo = requireCommand('skopeo');
  const args = [
    'inspect',
    '--raw',
    '--tls-verify=false',
    ...(creds ? ['--creds', creds] : []),
    `docker://${image}`,
  ];
  const { stdout } = await execFileAsync(skopeo, args, { encoding: 'buffer', timeout: 30_000 });
  return `sha256:${createHash('sha256').update(stdout).digest('hex')}`;
}
