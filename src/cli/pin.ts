/** Reading a PIN from the terminal without echoing it. */

export function promptPin(prompt: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    if (!stdin.isTTY) {
      reject(new Error("No PIN: set HSMKEY_PIN or HSMKEY_PIN_FILE, or give --pin-file"));
      return;
    }
    let pin = "";
    const wasRaw = stdin.isRaw;
    // Echo off before the prompt shows: a PIN typed the moment the prompt appears is not echoed.
    stdin.setRawMode(true);
    process.stderr.write(prompt);
    stdin.resume();
    stdin.setEncoding("utf8");
    const done = (error?: Error) => {
      stdin.setRawMode(wasRaw);
      stdin.pause();
      stdin.removeListener("data", onData);
      process.stderr.write("\n");
      if (error) reject(error);
      else resolve(pin);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return done();
        if (ch === "\u0003") return done(new Error("PIN entry cancelled"));
        if (ch === "\u007f" || ch === "\b") pin = pin.slice(0, -1);
        else pin += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** Ask a yes/no question on the terminal; false when there is no terminal. */
export async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const { createInterface } = await import("node:readline/promises");
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}
