/**
 * Test fixture: a SoftHSM2 token reached over a Unix socket through `p11-kit server` and
 * `p11-kit-client.so`, the way a library meets a network HSM (a PKCS#11 module that forwards every
 * call to a remote token).
 *
 * The token is a fresh embedded SoftHSM token (freshHsm) whose keys are generated in-process; that
 * Hsm is then closed (SoftHSM finalized in this process) and a `p11-kit server` child process
 * exports the token on `<home>/p11.sock`. p11-kit-client.so reads P11_KIT_SERVER_ADDRESS at
 * C_Initialize, so it is set in process.env here, before openHsm().
 *
 * The PIN is read from the fixture's PIN file and handed to openHsm() in memory only; it is never
 * on a command line or in a log.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { HsmOptions } from "../../src/options.js";
import { freshHsm } from "./token.js";
import type { Hsm } from "../../src/index.js";

const CLIENT_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
  "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
  "/usr/lib64/pkcs11/p11-kit-client.so",
  "/usr/lib/pkcs11/p11-kit-client.so",
];
const SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so";

/** Path of p11-kit-client.so on this machine, or undefined. */
export function findP11KitClient(): string | undefined {
  return CLIENT_CANDIDATES.find((p) => existsSync(p));
}

export interface P11KitToken {
  home: string;
  socket: string;
  label: string;
  /** Options for openHsm() through the client module. */
  options: HsmOptions & { module: string; token: string; pin: string };
  server: ChildProcess;
  /** Kill the server and its per-connection children (SIGKILL to its process group) and wait. Idempotent. */
  kill(): Promise<void>;
  /** Kill the server and remove the token directory. */
  dispose(): Promise<void>;
}

/**
 * Create a fresh SoftHSM token, let `prepare` make keys on it in-process, close it, and export it
 * through a `p11-kit server` child process.
 */
export async function startP11KitToken(prepare: (hsm: Hsm) => Promise<void>): Promise<P11KitToken> {
  const client = findP11KitClient();
  if (!client) throw new Error("p11-kit-client.so not found; install p11-kit-modules");
  const fixture = await freshHsm();
  const { home } = fixture;
  const label = fixture.hsm.info.label;
  try {
    await prepare(fixture.hsm);
  } finally {
    await fixture.hsm.close();
  }
  const pin = readFileSync(join(home, "user.pin"), "utf8").split("\n")[0]!;
  const socket = join(home, "p11.sock");
  const conf = process.env.SOFTHSM2_CONF;
  if (!conf) throw new Error("SOFTHSM2_CONF not set after freshHsm()");

  const server = spawn("p11-kit", ["server", "-f", "-s", "-n", socket, "--provider", SOFTHSM, `pkcs11:token=${label}`], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: the server forks a `p11-kit-remote` per client connection, and that
    // child (which holds SoftHSM) must die with it.
    detached: true,
  });
  let output = "";
  server.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  server.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  let exited = false;
  const gone = new Promise<void>((resolve) => server.once("exit", () => ((exited = true), resolve())));

  const deadline = Date.now() + 10_000;
  while (!existsSync(socket)) {
    if (exited) throw new Error(`p11-kit server exited before creating its socket: ${output.trim()}`);
    if (Date.now() > deadline) {
      process.kill(-server.pid!, "SIGKILL");
      throw new Error(`p11-kit server did not create ${socket} within 10 s: ${output.trim()}`);
    }
    await sleep(20);
  }
  process.env.P11_KIT_SERVER_ADDRESS = `unix:path=${socket}`;

  const kill = async (): Promise<void> => {
    if (!exited) {
      try {
        process.kill(-server.pid!, "SIGKILL"); // the server and its per-connection children
      } catch {
        server.kill("SIGKILL");
      }
    }
    await gone;
  };
  return {
    home,
    socket,
    label,
    options: { module: client, token: label, pin },
    server,
    kill,
    async dispose() {
      await kill();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
