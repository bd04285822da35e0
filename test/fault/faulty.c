/*
 * faulty.c: a fault-injecting PKCS#11 module for hsmkey's tests.
 *
 * It forwards every call to a real PKCS#11 module (FAULTY_TARGET, default SoftHSM2) and, by
 * configuration, makes chosen functions return a chosen CKR_* value or sleep before forwarding.
 * A failed call is NOT forwarded: the token never sees it, exactly as if the session had been lost
 * on the way.
 *
 * Configuration: `key=value` lines, read from the environment (FAULTY_<KEY>, upper case) at the
 * C_Initialize that initialises the target (not at one that finds it initialised already, as a
 * second thread's does) and from the control file FAULTY_CONTROL, which is re-read on any call when its
 * mtime, size or inode changed (tests rewrite it atomically with rename). Every (re)configuration
 * resets the call counters of the faulted functions.
 *
 *   fail_function=C_Sign      function to fault (one name)
 *   fail_rv=0xB3              CK_RV to return (hex or decimal)
 *   fail_nth=3                the Nth call of fail_function after configuration fails (0 = off)
 *   fail_count=1              how many consecutive calls fail from the Nth on (default 1)
 *   fail_every=0              every Kth call fails (0 = off)
 *   fail_probability=0.0      each call fails with this probability
 *   fail_function.1=C_Login   up to 4 independent rules: fail_* keys with a ".N" suffix (N = 1..3)
 *                             configure rule N (no suffix: rule 0); each rule counts its own calls
 *   delay_function=C_Sign     function to delay
 *   delay_ms=200              delay in milliseconds
 *
 * C_GetInfo names this module ("hsmkey fault injector") as the manufacturer, not the target: it is
 * another library, which hsmkey must not take for SoftHSM (whose token threads load copies of it).
 *
 * Trace: when FAULTY_COUNTS names a file, every wrapped call appends "<function>\n" and every
 * injected fault appends "FAULT <function> 0x<rv>\n" (one write() with O_APPEND per line).
 *
 * Only the PKCS#11 types this file needs are declared: every handle and CK_ULONG is an unsigned
 * long, every structure is passed through as an opaque pointer.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef unsigned long CK_RV;
typedef unsigned long CK_ULONG;
typedef unsigned char CK_BYTE;
typedef void *CK_PTR;

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_ARGUMENTS_BAD 0x7UL

typedef void (*CK_FN)(void);

/* CK_FUNCTION_LIST of PKCS#11 v2.40: a version and 68 function pointers, in this order. */
#define FN_COUNT 68
typedef struct {
  CK_BYTE major;
  CK_BYTE minor;
} CK_VERSION;

typedef struct {
  CK_VERSION version;
  CK_FN fn[FN_COUNT];
} CK_FUNCTION_LIST;

enum {
  I_C_Initialize = 0, I_C_Finalize, I_C_GetInfo, I_C_GetFunctionList, I_C_GetSlotList, I_C_GetSlotInfo,
  I_C_GetTokenInfo, I_C_GetMechanismList, I_C_GetMechanismInfo, I_C_InitToken, I_C_InitPIN, I_C_SetPIN,
  I_C_OpenSession, I_C_CloseSession, I_C_CloseAllSessions, I_C_GetSessionInfo, I_C_GetOperationState,
  I_C_SetOperationState, I_C_Login, I_C_Logout, I_C_CreateObject, I_C_CopyObject, I_C_DestroyObject,
  I_C_GetObjectSize, I_C_GetAttributeValue, I_C_SetAttributeValue, I_C_FindObjectsInit, I_C_FindObjects,
  I_C_FindObjectsFinal, I_C_EncryptInit, I_C_Encrypt, I_C_EncryptUpdate, I_C_EncryptFinal, I_C_DecryptInit,
  I_C_Decrypt, I_C_DecryptUpdate, I_C_DecryptFinal, I_C_DigestInit, I_C_Digest, I_C_DigestUpdate,
  I_C_DigestKey, I_C_DigestFinal, I_C_SignInit, I_C_Sign, I_C_SignUpdate, I_C_SignFinal, I_C_SignRecoverInit,
  I_C_SignRecover, I_C_VerifyInit, I_C_Verify, I_C_VerifyUpdate, I_C_VerifyFinal, I_C_VerifyRecoverInit,
  I_C_VerifyRecover, I_C_DigestEncryptUpdate, I_C_DecryptDigestUpdate, I_C_SignEncryptUpdate,
  I_C_DecryptVerifyUpdate, I_C_GenerateKey, I_C_GenerateKeyPair, I_C_WrapKey, I_C_UnwrapKey, I_C_DeriveKey,
  I_C_SeedRandom, I_C_GenerateRandom, I_C_GetFunctionStatus, I_C_CancelFunction, I_C_WaitForSlotEvent,
  I_END
};

typedef CK_RV (*GetFunctionListFn)(CK_FUNCTION_LIST **);

/* ---- configuration ---------------------------------------------------------------------- */

#define RULES 4

typedef struct {
  char fail_function[64];
  CK_RV fail_rv;
  unsigned long fail_nth;
  unsigned long fail_count;
  unsigned long fail_every;
  double fail_probability;
} Rule;

typedef struct {
  Rule rule[RULES];
  char delay_function[64];
  unsigned long delay_ms;
} Config;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static Config config;
static unsigned long fail_calls[RULES]; /* calls of each rule's function since the last configuration */
static struct stat control_stat;
static int control_seen;
static unsigned int rand_state = 12345;

static void *target_handle;
static CK_FUNCTION_LIST *target;
static CK_FUNCTION_LIST wrapped;

static void config_defaults(Config *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < RULES; i++) {
    c->rule[i].fail_rv = CKR_GENERAL_ERROR;
    c->rule[i].fail_count = 1;
  }
}

static void trim(char *s) {
  char *end = s + strlen(s);
  while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t')) *--end = 0;
}

/* `fail_*` keys may end in ".N" (N < RULES) to configure rule N; without a suffix, rule 0. */
static void config_set(Config *c, const char *key_in, const char *value) {
  char key[64];
  snprintf(key, sizeof key, "%s", key_in);
  int n = 0;
  char *dot = strchr(key, '.');
  if (dot) {
    n = atoi(dot + 1);
    *dot = 0;
    if (n < 0 || n >= RULES) return;
  }
  Rule *r = &c->rule[n];
  if (strcmp(key, "fail_function") == 0) {
    snprintf(r->fail_function, sizeof r->fail_function, "%s", value);
  } else if (strcmp(key, "fail_rv") == 0) {
    r->fail_rv = strtoul(value, NULL, 0);
  } else if (strcmp(key, "fail_nth") == 0) {
    r->fail_nth = strtoul(value, NULL, 0);
  } else if (strcmp(key, "fail_count") == 0) {
    r->fail_count = strtoul(value, NULL, 0);
  } else if (strcmp(key, "fail_every") == 0) {
    r->fail_every = strtoul(value, NULL, 0);
  } else if (strcmp(key, "fail_probability") == 0) {
    r->fail_probability = strtod(value, NULL);
  } else if (strcmp(key, "delay_function") == 0) {
    snprintf(c->delay_function, sizeof c->delay_function, "%s", value);
  } else if (strcmp(key, "delay_ms") == 0) {
    c->delay_ms = strtoul(value, NULL, 0);
  }
}

static const char *KEYS[] = {"fail_function", "fail_rv", "fail_nth", "fail_count", "fail_every",
                             "fail_probability", "delay_function", "delay_ms", NULL};

/* Environment first, then the control file overrides. Caller holds the lock. */
static void config_load_locked(void) {
  Config c;
  config_defaults(&c);
  for (int i = 0; KEYS[i]; i++) {
    char name[64] = "FAULTY_";
    size_t n = strlen(name);
    for (const char *k = KEYS[i]; *k && n < sizeof name - 1; k++) name[n++] = (char)(*k >= 'a' && *k <= 'z' ? *k - 32 : *k);
    name[n] = 0;
    const char *v = getenv(name);
    if (v && *v) config_set(&c, KEYS[i], v);
  }
  const char *path = getenv("FAULTY_CONTROL");
  if (path && *path) {
    FILE *f = fopen(path, "r");
    if (f) {
      char line[256];
      while (fgets(line, sizeof line, f)) {
        trim(line);
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#') continue;
        *eq = 0;
        char *key = line;
        while (*key == ' ' || *key == '\t') key++;
        trim(key);
        char *value = eq + 1;
        while (*value == ' ' || *value == '\t') value++;
        config_set(&c, key, value);
      }
      fclose(f);
    }
  }
  config = c;
  memset(fail_calls, 0, sizeof fail_calls);
}

/* Re-read the control file when it changed. Caller holds the lock. */
static void config_refresh_locked(void) {
  const char *path = getenv("FAULTY_CONTROL");
  if (!path || !*path) return;
  struct stat st;
  if (stat(path, &st) != 0) {
    if (control_seen) {
      control_seen = 0;
      config_load_locked();
    }
    return;
  }
  if (control_seen && st.st_ino == control_stat.st_ino && st.st_size == control_stat.st_size &&
      st.st_mtim.tv_sec == control_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == control_stat.st_mtim.tv_nsec) {
    return;
  }
  control_stat = st;
  control_seen = 1;
  config_load_locked();
}

static void trace(const char *line) {
  const char *path = getenv("FAULTY_COUNTS");
  if (!path || !*path) return;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  ssize_t ignored = write(fd, line, strlen(line));
  (void)ignored;
  close(fd);
}

/*
 * Called before forwarding `name`. Returns CKR_OK to forward, or the CK_RV to return instead.
 * Sleeps first when `name` is the delayed function.
 */
static CK_RV fault_check(const char *name) {
  unsigned long delay = 0;
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&lock);
  config_refresh_locked();
  if (config.delay_ms && strcmp(config.delay_function, name) == 0) delay = config.delay_ms;
  for (int i = 0; i < RULES; i++) {
    const Rule *r = &config.rule[i];
    if (!r->fail_function[0] || strcmp(r->fail_function, name) != 0) continue;
    unsigned long n = ++fail_calls[i];
    int fail = 0;
    if (r->fail_nth && n >= r->fail_nth && n < r->fail_nth + r->fail_count) fail = 1;
    if (r->fail_every && n % r->fail_every == 0) fail = 1;
    if (r->fail_probability > 0.0) {
      double x = (double)rand_r(&rand_state) / ((double)RAND_MAX + 1.0);
      if (x < r->fail_probability) fail = 1;
    }
    if (fail && rv == CKR_OK) rv = r->fail_rv;
  }
  pthread_mutex_unlock(&lock);

  char line[128];
  snprintf(line, sizeof line, "%s\n", name);
  trace(line);
  if (rv != CKR_OK) {
    snprintf(line, sizeof line, "FAULT %s 0x%lX\n", name, rv);
    trace(line);
  }
  if (delay) {
    struct timespec ts = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  return rv;
}

/* ---- loading the target ------------------------------------------------------------------ */

static CK_RV load_target(void) {
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&lock);
  if (!target) {
    const char *path = getenv("FAULTY_TARGET");
    if (!path || !*path) path = "/usr/lib/softhsm/libsofthsm2.so";
    target_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    GetFunctionListFn get = target_handle ? (GetFunctionListFn)dlsym(target_handle, "C_GetFunctionList") : NULL;
    if (!get || get(&target) != CKR_OK || !target) {
      if (target_handle) dlclose(target_handle);
      target_handle = NULL;
      target = NULL;
      rv = CKR_GENERAL_ERROR;
    }
  }
  pthread_mutex_unlock(&lock);
  return rv;
}

__attribute__((destructor)) static void unload_target(void) {
  if (target_handle) dlclose(target_handle);
  target_handle = NULL;
  target = NULL;
}

/* ---- wrappers ------------------------------------------------------------------------------ */

#define ORIG(name, type) ((type)target->fn[I_##name])

#define WRAP(name, params, args, ...)                                 \
  typedef CK_RV(*name##_t) params;                                    \
  static CK_RV w_##name params {                                      \
    CK_RV rv = fault_check(#name);                                    \
    if (rv != CKR_OK) return rv;                                      \
    return ORIG(name, name##_t) args;                                 \
  }

typedef CK_ULONG H; /* any handle */
typedef CK_ULONG *PUL;
typedef CK_BYTE *PB;

WRAP(C_OpenSession, (H slot, CK_ULONG flags, CK_PTR app, CK_PTR notify, H *session), (slot, flags, app, notify, session))
WRAP(C_CloseSession, (H session), (session))
WRAP(C_GetSessionInfo, (H session, CK_PTR info), (session, info))
WRAP(C_Login, (H session, CK_ULONG user, PB pin, CK_ULONG len), (session, user, pin, len))
WRAP(C_Logout, (H session), (session))
WRAP(C_CreateObject, (H session, CK_PTR tmpl, CK_ULONG n, H *obj), (session, tmpl, n, obj))
WRAP(C_DestroyObject, (H session, H obj), (session, obj))
WRAP(C_GetAttributeValue, (H session, H obj, CK_PTR tmpl, CK_ULONG n), (session, obj, tmpl, n))
WRAP(C_FindObjectsInit, (H session, CK_PTR tmpl, CK_ULONG n), (session, tmpl, n))
WRAP(C_FindObjects, (H session, H *objs, CK_ULONG max, PUL count), (session, objs, max, count))
WRAP(C_FindObjectsFinal, (H session), (session))
WRAP(C_EncryptInit, (H session, CK_PTR mech, H key), (session, mech, key))
WRAP(C_Encrypt, (H session, PB data, CK_ULONG len, PB out, PUL outLen), (session, data, len, out, outLen))
WRAP(C_DecryptInit, (H session, CK_PTR mech, H key), (session, mech, key))
WRAP(C_Decrypt, (H session, PB data, CK_ULONG len, PB out, PUL outLen), (session, data, len, out, outLen))
WRAP(C_SignInit, (H session, CK_PTR mech, H key), (session, mech, key))
WRAP(C_Sign, (H session, PB data, CK_ULONG len, PB sig, PUL sigLen), (session, data, len, sig, sigLen))
WRAP(C_VerifyInit, (H session, CK_PTR mech, H key), (session, mech, key))
WRAP(C_Verify, (H session, PB data, CK_ULONG len, PB sig, CK_ULONG sigLen), (session, data, len, sig, sigLen))
WRAP(C_GenerateKey, (H session, CK_PTR mech, CK_PTR tmpl, CK_ULONG n, H *key), (session, mech, tmpl, n, key))
WRAP(C_GenerateKeyPair,
     (H session, CK_PTR mech, CK_PTR pubT, CK_ULONG pubN, CK_PTR privT, CK_ULONG privN, H *pub, H *priv),
     (session, mech, pubT, pubN, privT, privN, pub, priv))
WRAP(C_WrapKey, (H session, CK_PTR mech, H wrapping, H key, PB out, PUL outLen), (session, mech, wrapping, key, out, outLen))
WRAP(C_UnwrapKey, (H session, CK_PTR mech, H unwrapping, PB in, CK_ULONG inLen, CK_PTR tmpl, CK_ULONG n, H *key),
     (session, mech, unwrapping, in, inLen, tmpl, n, key))
WRAP(C_DeriveKey, (H session, CK_PTR mech, H base, CK_PTR tmpl, CK_ULONG n, H *key), (session, mech, base, tmpl, n, key))

typedef CK_RV (*C_Initialize_t)(CK_PTR);
/* Whether the target is initialised: a C_Initialize from another thread of the process then
 * answers CKR_CRYPTOKI_ALREADY_INITIALIZED and must not reset the configuration or its counters. */
static int initialized = 0;

static CK_RV w_C_Initialize(CK_PTR args) {
  pthread_mutex_lock(&lock);
  if (!initialized) {
    control_seen = 0;
    config_load_locked();
  }
  pthread_mutex_unlock(&lock);
  CK_RV rv = fault_check("C_Initialize");
  if (rv != CKR_OK) return rv;
  rv = ORIG(C_Initialize, C_Initialize_t)(args);
  if (rv == CKR_OK) {
    pthread_mutex_lock(&lock);
    initialized = 1;
    pthread_mutex_unlock(&lock);
  }
  return rv;
}

typedef CK_RV (*C_Finalize_t)(CK_PTR);
static CK_RV w_C_Finalize(CK_PTR reserved) {
  CK_RV rv = fault_check("C_Finalize");
  if (rv != CKR_OK) return rv;
  rv = ORIG(C_Finalize, C_Finalize_t)(reserved);
  if (rv == CKR_OK) {
    pthread_mutex_lock(&lock);
    initialized = 0;
    pthread_mutex_unlock(&lock);
  }
  return rv;
}

/* CK_INFO starts with a 2-byte CK_VERSION, then the 32-byte blank-padded manufacturerID. */
typedef CK_RV (*C_GetInfo_t)(CK_PTR);
static CK_RV w_C_GetInfo(CK_PTR info) {
  CK_RV rv = ORIG(C_GetInfo, C_GetInfo_t)(info);
  if (rv == CKR_OK && info) {
    static const char name[] = "hsmkey fault injector";
    CK_BYTE *manufacturer = (CK_BYTE *)info + 2;
    memset(manufacturer, ' ', 32);
    memcpy(manufacturer, name, sizeof name - 1);
  }
  return rv;
}

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST **list);

#define SET(name) wrapped.fn[I_##name] = (CK_FN)w_##name

static CK_RV build_list(void) {
  CK_RV rv = load_target();
  if (rv != CKR_OK) return rv;
  pthread_mutex_lock(&lock);
  wrapped = *target; /* every function forwarded as is, then ours on top */
  wrapped.fn[I_C_GetFunctionList] = (CK_FN)w_C_GetFunctionList;
  SET(C_Initialize);
  SET(C_Finalize);
  SET(C_GetInfo);
  SET(C_OpenSession);
  SET(C_CloseSession);
  SET(C_GetSessionInfo);
  SET(C_Login);
  SET(C_Logout);
  SET(C_CreateObject);
  SET(C_DestroyObject);
  SET(C_GetAttributeValue);
  SET(C_FindObjectsInit);
  SET(C_FindObjects);
  SET(C_FindObjectsFinal);
  SET(C_EncryptInit);
  SET(C_Encrypt);
  SET(C_DecryptInit);
  SET(C_Decrypt);
  SET(C_SignInit);
  SET(C_Sign);
  SET(C_VerifyInit);
  SET(C_Verify);
  SET(C_GenerateKey);
  SET(C_GenerateKeyPair);
  SET(C_WrapKey);
  SET(C_UnwrapKey);
  SET(C_DeriveKey);
  pthread_mutex_unlock(&lock);
  return CKR_OK;
}

static CK_RV w_C_GetFunctionList(CK_FUNCTION_LIST **list) {
  if (!list) return CKR_ARGUMENTS_BAD;
  CK_RV rv = build_list();
  if (rv != CKR_OK) return rv;
  *list = &wrapped;
  return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST **list) {
  return w_C_GetFunctionList(list);
}
