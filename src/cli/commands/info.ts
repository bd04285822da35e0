import { JOSE_ALGORITHMS, shapeOf } from "../../jose/algorithms.js";
import { probeAlgorithms, type ProbeResult } from "../../jose/probe.js";
import { listTokens } from "../../pkcs11/slot.js";
import { mechanismName } from "../../pkcs11/constants.js";
import type { Command } from "../command.js";
import { fields, table } from "../output.js";

export const info: Command = {
  path: ["info"],
  summary: "Module, library and token information, slots, and which JOSE algorithms the token offers",
  usage: "[--no-probe]",
  help: [
    "For every JOSE algorithm, a live probe makes a throwaway session key in the token and runs the",
    "algorithm through jose (sign and verify, encrypt and decrypt): 'supported' means it worked.",
    "--no-probe   only list whether the token offers the mechanisms (no keys are made)",
  ],
  options: { "no-probe": { type: "boolean" } },
  async run(ctx, v) {
    const hsm = await ctx.hsm();
    const token = hsm.token;
    const lib = token.lib.C_GetInfo();
    const library = {
      manufacturer: lib.manufacturerID.trim(),
      description: lib.libraryDescription.trim(),
      version: `${lib.libraryVersion.major}.${lib.libraryVersion.minor}`,
      cryptoki: `${lib.cryptokiVersion.major}.${lib.cryptokiVersion.minor}`,
    };
    const slots = listTokens(token.module).map((m) => ({
      slot: m.slotId,
      label: m.info.label.trim(),
      serial: m.info.serialNumber,
      model: m.info.model.trim(),
      manufacturer: m.info.manufacturerID.trim(),
    }));
    const probed = v["no-probe"] === true ? undefined : new Map<string, ProbeResult>((await probeAlgorithms(token)).map((r) => [r.alg, r]));
    // The probe runs Ed25519 as EdDSA and the A*GCM content algorithms as dir (same keys, same operations).
    if (probed) {
      const alias = (alg: string, as: string) => {
        const r = probed.get(as);
        if (!probed.has(alg) && r) probed.set(alg, { ...r, alg: alg as ProbeResult["alg"] });
      };
      alias("Ed25519", "EdDSA");
      for (const bits of [128, 192, 256]) alias(`A${bits}GCM`, "dir");
    }
    const capabilities = JOSE_ALGORITHMS.map((alg) => {
      const shape = shapeOf(alg);
      const offered = shape.mechanisms.filter((m) => token.has(m));
      const probe = probed?.get(alg);
      return {
        alg,
        use: shape.use,
        key: shape.kind,
        mechanism: offered.length > 0,
        supported: probe ? probe.supported : offered.length > 0,
        probed: probe !== undefined,
        mechanisms: (offered.length ? offered : shape.mechanisms).map(mechanismName),
        ...(probe?.reason ? { reason: probe.reason } : {}),
      };
    });
    const data = { module: hsm.info.module, library, token: { ...hsm.info }, slots, capabilities };
    ctx.print(data, () =>
      [
        fields({ module: hsm.info.module, library: `${library.description} ${library.version} (${library.manufacturer}), Cryptoki ${library.cryptoki}` }),
        "",
        "Token",
        fields({ label: hsm.info.label, serial: hsm.info.serial, manufacturer: hsm.info.manufacturer, model: hsm.info.model, slot: hsm.info.slotId, embedded: hsm.info.embedded }),
        "",
        "Slots with a token",
        table(slots),
        "",
        "JOSE algorithms",
        table(
          capabilities.map((c) => ({
            alg: c.alg,
            use: c.use,
            key: c.key,
            supported: c.supported,
            mechanisms: c.mechanism ? c.mechanisms : `missing ${c.mechanisms.join(" or ")}`,
            note: c.reason ? shorten(c.reason) : c.probed ? "probed" : "not probed",
          })),
        ),
      ].join("\n"),
    );
  },
};

function shorten(text: string): string {
  return text.length > 72 ? `${text.slice(0, 71)}…` : text;
}
