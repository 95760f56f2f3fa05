// Starts comfy-sim and `zimage serve` on free ports with a fresh data folder, waits until the gateway
// says ComfyUI is ready, and hands the address to the tests (E2E_BASE_URL). Their output goes to
// test-results/logs/. The binaries come from scripts/e2e (ZIMAGE_BIN, COMFY_SIM_BIN, SITE_ROOT).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(__dirname, '..');
const zimageBin = process.env.ZIMAGE_BIN ?? join(repoRoot, 'target/debug/zimage');
const comfySimBin = process.env.COMFY_SIM_BIN ?? join(repoRoot, 'target/debug/comfy-sim');
const siteRoot = process.env.SITE_ROOT ?? join(repoRoot, 'target/site');
// Slow enough that a person (and a test) can watch the steps and press Cancel mid-sampling.
const stepMs = process.env.E2E_STEP_MS ?? '250';
const startupTimeoutMs = 60_000;

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function start(name: string, command: string, args: string[], logDir: string): ChildProcess {
  const log = createWriteStream(join(logDir, `${name}.log`));
  const child = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('exit', (code, signal) => {
    if (code !== null && code !== 0) console.error(`${name} exited with ${code}; see ${logDir}/${name}.log`);
    else if (signal && signal !== 'SIGTERM') console.error(`${name} stopped by ${signal}`);
  });
  return child;
}

async function waitFor(what: string, check: () => Promise<boolean>, processes: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + startupTimeoutMs;
  while (Date.now() < deadline) {
    if (processes.some((child) => child.exitCode !== null)) throw new Error(`a server exited while waiting for ${what}`);
    try {
      if (await check()) return;
    } catch {
      // not listening yet
    }
    await new Promise((wake) => setTimeout(wake, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  const logDir = join(__dirname, 'test-results', 'logs');
  mkdirSync(logDir, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'zimage-e2e-'));
  const [comfyPort, gatewayPort] = [await freePort(), await freePort()];
  const comfyUrl = `http://127.0.0.1:${comfyPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;

  const comfy = start('comfy-sim', comfySimBin, ['--listen', `127.0.0.1:${comfyPort}`, '--step-ms', stepMs, '--previews'], logDir);
  const processes = [comfy];
  const stop = async () => {
    for (const child of processes) child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitFor('comfy-sim', async () => (await fetch(`${comfyUrl}/system_stats`)).ok, processes);
    const gateway = start(
      'zimage',
      zimageBin,
      ['serve', '--comfyui', comfyUrl, '--listen', `127.0.0.1:${gatewayPort}`, '--data-dir', dataDir, '--site-root', siteRoot],
      logDir,
    );
    processes.push(gateway);
    await waitFor('the gateway to be ready', async () => (await fetch(`${gatewayUrl}/readyz`)).ok, processes);
  } catch (error) {
    await stop();
    throw error;
  }
  process.env.E2E_BASE_URL = gatewayUrl;
  return stop;
}
