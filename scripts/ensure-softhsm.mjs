#!/usr/bin/env node
// Run before `npm test` and `npm run demo`: make sure SoftHSM2 (the embedded development token's
// PKCS#11 module) is installed. Silent when it is. As root on Debian/Ubuntu it installs it with
// apt-get; otherwise it says what to install and exits 1.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";

// The same list as SOFTHSM2_MODULE_CANDIDATES in src/pkcs11/embedded.ts (test/embedded.test.ts checks).
const CANDIDATES = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
  "/usr/lib64/pkcs11/libsofthsm2.so",
  "/usr/lib/pkcs11/libsofthsm2.so",
  "/usr/lib64/softhsm/libsofthsm2.so",
  "/usr/local/lib/softhsm/libsofthsm2.so",
  "/opt/homebrew/lib/softhsm/libsofthsm2.so",
  "/usr/local/opt/softhsm/lib/softhsm/libsofthsm2.so",
];

const found = () => CANDIDATES.some((path) => existsSync(path));

if (found()) process.exit(0);

const INSTRUCTIONS = `hsmkey needs SoftHSM2 for its embedded development token (tests and demo), and it is not installed.
Install it:
  Debian/Ubuntu:  sudo apt-get install softhsm2 libnss3-tools openssl
  Fedora/RHEL:    sudo dnf install softhsm nss-tools openssl
  macOS:          brew install softhsm nss openssl
(HSMKEY_MODULE can point to another PKCS#11 module when you use a real token instead.)`;

function onPath(command) {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
if (process.platform === "linux" && isRoot && onPath("apt-get")) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const run = (args) => spawnSync("apt-get", args, { stdio: "inherit", env }).status === 0;
  console.error("hsmkey: SoftHSM2 is missing; installing softhsm2 libnss3-tools openssl with apt-get");
  // Package lists are missing in fresh containers (/var/lib/apt/lists holds only lock/partial).
  const lists = "/var/lib/apt/lists";
  const haveLists =
    existsSync(lists) && readdirSync(lists).some((f) => f !== "lock" && f !== "partial" && statSync(`${lists}/${f}`).isFile());
  const install = ["install", "-y", "-qq", "--no-install-recommends", "softhsm2", "libnss3-tools", "openssl"];
  let ok = (haveLists || run(["update", "-qq"])) && run(install);
  if (!ok && haveLists) ok = run(["update", "-qq"]) && run(install); // stale lists: refresh once and retry
  if (ok && found()) process.exit(0);
  console.error("hsmkey: installing SoftHSM2 with apt-get failed.");
}

console.error(INSTRUCTIONS);
process.exit(1);
