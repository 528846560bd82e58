"""Check your own JAX loss against npjem in float64: MoCo's InfoNCE, a buggy version then a fixed one.

    pip install jax
    python examples/check_my_jax_loss.py

MoCo's keys come from the momentum encoder and its queue is a buffer: neither may receive a
gradient. The buggy version forgets ``jax.lax.stop_gradient`` on the keys and sums over the
batch where MoCo averages; ``npjem.crosscheck.compare`` reports both (a gradient that reaches a
stop-gradient input, and a value that is N times npjem's).
"""
import sys

import jax
import jax.numpy as jnp

from npjem import crosscheck


def _normalize(x):
    return x / jnp.linalg.norm(x, axis=1, keepdims=True)


def my_moco_buggy(q, k, queue, temperature=0.2):
    q, k = _normalize(q), _normalize(k)                     # slip 1: no stop_gradient on k
    logits = jnp.concatenate([jnp.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / temperature
    return jnp.sum(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])   # slip 2: sum, not mean


def my_moco_fixed(q, k, queue, temperature=0.2):
    q = _normalize(q)
    k = jax.lax.stop_gradient(_normalize(k))
    queue = jax.lax.stop_gradient(queue)
    logits = jnp.concatenate([jnp.sum(q * k, 1, keepdims=True), q @ queue.T], 1) / temperature
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])


def main():
    print("The buggy version:\n")
    buggy = crosscheck.compare(my_moco_buggy, "moco", framework="jax")
    print(buggy, "\n")
    print("The fixed version:\n")
    fixed = crosscheck.compare(my_moco_fixed, "moco", framework="jax")
    print(fixed)
    return 0 if (fixed.ok and not buggy.ok) else 1


if __name__ == "__main__":
    sys.exit(main())
