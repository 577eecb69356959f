// One Baileys socket with a multi-file auth state, as the seed's bots run it; WhatsApp is
// unreachable here, so it sits in its connect/retry loop. Prints its VmRSS after HOLD_MS.
import pkg from 'baileys';
import { readFileSync } from 'node:fs';

const makeWASocket = pkg.default;
const { useMultiFileAuthState } = pkg;
const dir = process.argv[2] || '/tmp/wabot-bench-baileys-auth';
const holdMs = Number(process.env.HOLD_MS || 8000);

const { state, saveCreds } = await useMultiFileAuthState(dir);
const silent = { level: 'silent', child() { return silent; }, trace() {}, debug() {}, info() {},
  warn() {}, error() {}, fatal() {} };
const sock = makeWASocket({ auth: state, printQRInTerminal: false, logger: silent });
sock.ev.on('creds.update', saveCreds);
setTimeout(() => {
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1];
  console.log(JSON.stringify({ rss_kb: Number(rss) }));
  process.exit(0);
}, holdMs);
