/**
 * The Reflect metadata functions @peculiar/x509 (through tsyringe) requires at load time. When the
 * application already has a polyfill (reflect-metadata, core-js), it is used; otherwise these few
 * functions (the ones tsyringe and tslib call) are added. Import this module before @peculiar/x509.
 */
type Target = object;
type Prop = string | symbol | undefined;

const store = new WeakMap<Target, Map<Prop, Map<unknown, unknown>>>();

function own(target: Target, prop: Prop, create: boolean): Map<unknown, unknown> | undefined {
  let byProp = store.get(target);
  if (!byProp) {
    if (!create) return undefined;
    byProp = new Map();
    store.set(target, byProp);
  }
  let map = byProp.get(prop);
  if (!map && create) {
    map = new Map();
    byProp.set(prop, map);
  }
  return map;
}

const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== "function") {
  const defineMetadata = (key: unknown, value: unknown, target: Target, prop?: Prop) => {
    own(target, prop, true)!.set(key, value);
  };
  const getOwnMetadata = (key: unknown, target: Target, prop?: Prop) => own(target, prop, false)?.get(key);
  const getMetadata = (key: unknown, target: Target, prop?: Prop): unknown => {
    for (let t: Target | null = target; t; t = Object.getPrototypeOf(t) as Target | null) {
      const map = own(t, prop, false);
      if (map?.has(key)) return map.get(key);
    }
    return undefined;
  };
  const hasOwnMetadata = (key: unknown, target: Target, prop?: Prop) => own(target, prop, false)?.has(key) ?? false;
  const hasMetadata = (key: unknown, target: Target, prop?: Prop) => getMetadata(key, target, prop) !== undefined;
  const metadata = (key: unknown, value: unknown) => (target: Target, prop?: Prop) => defineMetadata(key, value, target, prop);
  for (const [name, fn] of Object.entries({ defineMetadata, getOwnMetadata, getMetadata, hasOwnMetadata, hasMetadata, metadata })) {
    Object.defineProperty(Reflect, name, { value: fn, configurable: true, writable: true, enumerable: false });
  }
}

export {};
