// The one piece of @noble/curves the page needs, bundled by sync-vendor.mjs (esbuild) into
// vendor/bls12-381.iife.min.js: checking an execution certificate's aggregated signature.
// Keys are BLS12-381 G1 points (48 bytes compressed), signatures G2 points (96 bytes), as the
// node's `bls12_381` crate encodes them; messages are hashed to G2 under the vote's DST.
import { bls12_381 } from "@noble/curves/bls12-381.js";

const scheme = bls12_381.longSignatures;

globalThis.gridledgerBls = {
  /// Whether `signature` is the aggregate of `publics`' signatures over `message` under `dst`.
  /// Malformed keys or signatures (not on the curve, not in the subgroup) verify as false.
  verifyAggregate(publics, message, signature, dst) {
    try {
      const key = scheme.aggregatePublicKeys(publics);
      return scheme.verify(signature, scheme.hash(message, dst), key);
    } catch (_) {
      return false;
    }
  },
};
