import { TorControlError } from './control-connection.js';
import { onionTarget } from './onion-service.js';

/**
 * `powbridge relay --print-torrc`: the torrc lines that make Tor itself run the relay's onion
 * service, for operators who would rather not give powbridge the control port. Tor then
 * keeps the key in HiddenServiceDir and writes the address to its `hostname` file.
 */

export interface TorrcSnippetOptions {
  /** A directory Tor owns (Debian: under /var/lib/tor, owned by debian-tor). */
  hiddenServiceDir: string;
  virtualPort: number;
  /** The relay's listener, as in relay.listen. */
  target: { host: string; port: number };
}

export function torrcSnippet(options: TorrcSnippetOptions): string {
  const dir = options.hiddenServiceDir.replace(/\/+$/, '');
  // torrc values end at the line; quoting rules differ between Tor versions, so keep it plain.
  if (!dir.startsWith('/') || !/^[^\s"\\#]+$/.test(dir)) {
    throw new TorControlError(
      'tor.hiddenServiceDir: expected an absolute path without spaces, quotes or #',
    );
  }
  const target = onionTarget(options.target);
  return [
    '# powbridge relay onion service: add to torrc (Debian: /etc/tor/torrc), then reload Tor',
    `HiddenServiceDir ${dir}/`,
    'HiddenServiceVersion 3',
    `HiddenServicePort ${options.virtualPort} ${target}`,
    `# The onion address is then in ${dir}/hostname; clients mine with`,
    `#   powbridge mine --proxy socks5h://127.0.0.1:9050 --relay ws://<address>${
      options.virtualPort === 80 ? '' : `:${options.virtualPort}`
    }/v1/circuit`,
    '',
  ].join('\n');
}
