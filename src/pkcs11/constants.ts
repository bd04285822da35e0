/**
 * PKCS#11 numbers used by hsmkey (values from the PKCS#11 v2.40 / v3.0 headers). Defined here
 * rather than taken from pkcs11js so that v3.0 EdDSA values, which pkcs11js and graphene lack,
 * sit beside the rest under one naming scheme.
 */

export const CKO = { DATA: 0, CERTIFICATE: 1, PUBLIC_KEY: 2, PRIVATE_KEY: 3, SECRET_KEY: 4 } as const;

export const CKK = {
  RSA: 0x0,
  EC: 0x3,
  GENERIC_SECRET: 0x10,
  AES: 0x1f,
  SHA_1_HMAC: 0x28,
  SHA256_HMAC: 0x2b,
  SHA384_HMAC: 0x2c,
  SHA512_HMAC: 0x2d,
  EC_EDWARDS: 0x40,
} as const;

export const CKA = {
  CLASS: 0x0,
  TOKEN: 0x1,
  PRIVATE: 0x2,
  LABEL: 0x3,
  VALUE: 0x11,
  CERTIFICATE_TYPE: 0x80,
  ISSUER: 0x81,
  SERIAL_NUMBER: 0x82,
  KEY_TYPE: 0x100,
  SUBJECT: 0x101,
  ID: 0x102,
  SENSITIVE: 0x103,
  ENCRYPT: 0x104,
  DECRYPT: 0x105,
  WRAP: 0x106,
  UNWRAP: 0x107,
  SIGN: 0x108,
  VERIFY: 0x10a,
  DERIVE: 0x10c,
  MODULUS: 0x120,
  MODULUS_BITS: 0x121,
  PUBLIC_EXPONENT: 0x122,
  PRIVATE_EXPONENT: 0x123,
  PRIME_1: 0x124,
  PRIME_2: 0x125,
  EXPONENT_1: 0x126,
  EXPONENT_2: 0x127,
  COEFFICIENT: 0x128,
  VALUE_LEN: 0x161,
  EXTRACTABLE: 0x162,
  NEVER_EXTRACTABLE: 0x164,
  ALWAYS_SENSITIVE: 0x165,
  EC_PARAMS: 0x180,
  EC_POINT: 0x181,
} as const;

export const CKC_X_509 = 0x0;

export const CKM = {
  RSA_PKCS_KEY_PAIR_GEN: 0x0,
  RSA_PKCS: 0x1,
  RSA_PKCS_OAEP: 0x9,
  RSA_PKCS_PSS: 0xd,
  SHA256_RSA_PKCS: 0x40,
  SHA384_RSA_PKCS: 0x41,
  SHA512_RSA_PKCS: 0x42,
  SHA256_RSA_PKCS_PSS: 0x43,
  SHA384_RSA_PKCS_PSS: 0x44,
  SHA512_RSA_PKCS_PSS: 0x45,
  SHA_1: 0x220,
  SHA256: 0x250,
  SHA256_HMAC: 0x251,
  SHA384: 0x260,
  SHA384_HMAC: 0x261,
  SHA512: 0x270,
  SHA512_HMAC: 0x271,
  GENERIC_SECRET_KEY_GEN: 0x350,
  EC_KEY_PAIR_GEN: 0x1040,
  ECDSA: 0x1041,
  ECDSA_SHA256: 0x1044,
  ECDSA_SHA384: 0x1045,
  ECDSA_SHA512: 0x1046,
  ECDH1_DERIVE: 0x1050,
  EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  EDDSA: 0x1057,
  AES_KEY_GEN: 0x1080,
  AES_GCM: 0x1087,
  AES_KEY_WRAP: 0x2109,
} as const;

export const CKG_MGF1 = { SHA1: 0x1, SHA256: 0x2, SHA384: 0x3, SHA512: 0x4 } as const;
export const CKZ_DATA_SPECIFIED = 0x1;
export const CKD_NULL = 0x1;

/** pkcs11js parameter-structure tags (its CK_PARAMS_* numbers). */
export const PARAMS = { RSA_OAEP: 4, RSA_PSS: 5, EC_DH: 6, AES_GCM_V240: 7 } as const;

export type HashName = "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512";

export const HASH_MECHANISM: Record<HashName, number> = {
  "SHA-1": CKM.SHA_1,
  "SHA-256": CKM.SHA256,
  "SHA-384": CKM.SHA384,
  "SHA-512": CKM.SHA512,
};

export const HASH_MGF: Record<HashName, number> = {
  "SHA-1": CKG_MGF1.SHA1,
  "SHA-256": CKG_MGF1.SHA256,
  "SHA-384": CKG_MGF1.SHA384,
  "SHA-512": CKG_MGF1.SHA512,
};

/** Names for messages: "CKM_ECDSA (0x1041)". */
export function mechanismName(mechanism: number): string {
  for (const [name, value] of Object.entries(CKM)) if (value === mechanism) return `CKM_${name}`;
  return `mechanism 0x${mechanism.toString(16)}`;
}
