// Loaded by scripts/ci-local (`node --import`) when Node is older than 22.
//
// gitlab-ci-local 4.75.1 bundles a dependency that calls Set.prototype.union, an ES2025 method
// that Node 22 has and Debian's / this machine's Node 20 does not ("kW.union is not a
// function" at start-up). It is the bundle's only use of the new Set methods, so this one
// method, with the standard's semantics for the Set arguments it is given, is all it needs.
if (typeof Set.prototype.union !== "function") {
  Object.defineProperty(Set.prototype, "union", {
    value(other) {
      const result = new Set(this);
      for (const value of other.keys()) result.add(value);
      return result;
    },
    writable: true,
    configurable: true,
  });
}
