// Starts comfy-sim and `zimage serve` on free ports with a fresh data folder, waits until the gateway
// says ComfyUI is ready, and hands the address to the tests (E2E_BASE_URL). Their output goes to
// test-results/logs/. The binaries come from scripts/e2e (ZIMAGE_BIN, COMFY_SIM_BIN, SITE_ROOT).
//
// The browser reaches the gateway through a plain TCP relay that tests can tell (E2E_RELAY_CONTROL) to
// cut every open connection, as a phone locking its screen does, and that notes the Last-Event-ID
// headers of reconnecting event streams.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repoRoot = resolve(__dirname, '..');
// Relative paths in the environment are taken from where Playwright was started.
const zimageBin = resolve(process.env.ZIMAGE_BIN ?? join(repoRoot, 'target/debug/zimage'));
const comfySimBin = resolve(process.env.COMFY_SIM_BIN ?? join(repoRoot, 'target/debug/comfy-sim'));
const siteRoot = resolve(process.env.SITE_ROOT ?? join(repoRoot, 'target/site'));
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

const startFailures = new Set<ChildProcess>();

function start(name: string, command: string, args: string[], logDir: string): ChildProcess {
  const log = createWriteStream(join(logDir, `${name}.log`));
  const child = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  child.on('error', (error) => {
    console.error(`cannot start ${name} (${command}): ${error.message}`);
    startFailures.add(child);
  });
  child.on('exit', (code, signal) => {
    if (code !== null && code !== 0) console.error(`${name} exited with ${code}; see ${logDir}/${name}.log`);
    else if (signal && signal !== 'SIGTERM') console.error(`${name} stopped by ${signal}`);
  });
  return child;
}

async function waitFor(what: string, check: () => Promise<boolean>, processes: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + startupTimeoutMs;
  while (Date.now() < deadline) {
    if (processes.some((child) => child.exitCode !== null || startFailures.has(child))) {
      throw new Error(`a server stopped or did not start while waiting for ${what}; see test-results/logs/`);
    }
    try {
      if (await check()) return;
    } catch {
      // not listening yet
    }
    await new Promise((wake) => setTimeout(wake, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Relays TCP from `listenPort` to `targetPort`; its control server answers POST /drop and GET /last-event-ids. */
function startRelay(listenPort: number, targetPort: number, controlPort: number): Promise<Server[]> {
  const sockets = new Set<Socket>();
  const lastEventIds: string[] = [];
  const relay = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.on('data', (chunk) => {
      const head = chunk.toString('latin1');
      const lastEventId = /\r\nlast-event-id: *([^\r]*)\r\n/i.exec(head)?.[1];
      if (lastEventId !== undefined && /^GET [^ ]*\/events /.test(head)) lastEventIds.push(lastEventId);
    });
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const control = createHttpServer((request, response) => {
    if (request.method === 'POST' && request.url === '/drop') {
      for (const socket of sockets) socket.destroy();
      response.end('dropped');
    } else if (request.url === '/last-event-ids') {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(lastEventIds));
    } else {
      response.statusCode = 404;
      response.end();
    }
  });
  const listen = (server: Server, port: number) =>
    new Promise<Server>((done) => server.listen(port, '127.0.0.1', () => done(server)));
  return Promise.all([listen(relay, listenPort), listen(control as unknown as Server, controlPort)]);
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  const logDir = join(__dirname, 'test-results', 'logs');
  mkdirSync(logDir, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'zimage-e2e-'));
  const [comfyPort, gatewayPort, relayPort, controlPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const comfyUrl = `http://127.0.0.1:${comfyPort}`;
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;

  // Two LoRAs, so the studio lists them and a LoRA travels from the picker to the image (styles.spec.ts).
  const comfy = start(
    'comfy-sim',
    comfySimBin,
    ['--listen', `127.0.0.1:${comfyPort}`, '--step-ms', stepMs, '--previews', '--loras', 'watercolor.safetensors,ink.safetensors'],
    logDir,
  );
  const processes = [comfy];
  const servers: Server[] = [];
  const stop = async () => {
    for (const server of servers) server.close();
    for (const child of processes) child.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitFor('comfy-sim', async () => (await fetch(`${comfyUrl}/system_stats`)).ok, processes);
    const gateway = start(
      'zimage',
      zimageBin,
      // No job rate limit: the SDK tests start more than ten jobs a minute from this one address (the
      // limit has tests of its own).
      ['serve', '--comfyui', comfyUrl, '--listen', `127.0.0.1:${gatewayPort}`, '--data-dir', dataDir, '--site-root', siteRoot,
        '--jobs-per-minute', '0'],
      logDir,
    );
    processes.push(gateway);
    await waitFor('the gateway to be ready', async () => (await fetch(`${gatewayUrl}/readyz`)).ok, processes);
    servers.push(...(await startRelay(relayPort, gatewayPort, controlPort)));
  } catch (error) {
    await stop();
    throw error;
  }
  process.env.E2E_BASE_URL = `http://127.0.0.1:${relayPort}`;
  process.env.E2E_RELAY_CONTROL = `http://127.0.0.1:${controlPort}`;
  return stop;
}
