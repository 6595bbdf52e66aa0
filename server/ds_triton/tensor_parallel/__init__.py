"""Tensor parallelism for generation models larger than one GPU (DeepSpeed AutoTP).

A generation spec with ``deployment.tensor_parallel: N`` renders to ONE Triton
instance (``KIND_MODEL``). That instance is rank 0, the leader: it starts N-1
worker processes (``worker.py``), and every rank loads its shard of the
checkpoint through ``deepspeed.init_inference(tensor_parallel={"tp_size": N})``
(AutoTP, no kernel injection) over torch.distributed: NCCL between GPUs, gloo
on CPU.

The generation engine is unchanged: ``TensorParallelRunner`` is a
``ModelRunner`` that, before each forward pass on the leader, sends the same
call to every worker (host arguments through a pipe, tensors broadcast by the
process group), so each rank runs the same forward on its own slot KV cache and
the sharded layers meet in their all-reduces. Rank 0's logits are the ones
sampled. Cache row moves (sequences joining, leaving, cancelled) ride along with
the next forward, so every rank's cache holds the same rows.

Lifetimes (no orphan workers, ever):

- each worker reads its commands from a pipe whose write end only the leader
  holds; when the leader process ends in any way (SIGKILL included) the pipe
  closes and the worker exits at once;
- the leader watches each worker's status pipe; a worker that dies or fails
  breaks the group, the forward in flight raises, and every later call fails
  with ``TensorParallelError`` naming the rank and its error;
- ``close`` (the instance's ``finalize``) sends a stop, waits, and kills what
  is left.
"""
