import type { Command } from "../command.js";
import { certExport } from "./cert-export.js";
import { certImport } from "./cert-import.js";
import { certSelfSign } from "./cert-self-sign.js";
import { csr } from "./csr.js";
import { info } from "./info.js";
import { init } from "./init.js";
import { jweDecrypt } from "./jwe-decrypt.js";
import { jweEncrypt } from "./jwe-encrypt.js";
import { jwks } from "./jwks.js";
import { jwtSign } from "./jwt-sign.js";
import { jwtVerifyCommand } from "./jwt-verify.js";
import { keysDelete } from "./keys-delete.js";
import { keysGenerate } from "./keys-generate.js";
import { keysImport } from "./keys-import.js";
import { keysList } from "./keys-list.js";
import { keysShow } from "./keys-show.js";

export const COMMANDS: Command[] = [
  init, info, keysList, keysShow, keysGenerate, keysImport, keysDelete, jwks,
  jwtSign, jwtVerifyCommand, jweEncrypt, jweDecrypt, csr, certSelfSign, certImport, certExport,
];
