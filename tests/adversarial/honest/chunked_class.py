# Honest and unusual: the entry point is an instance of a callable class that walks the
# queries in chunks of a fixed number of rows (bounding the scores it holds at once), each
# with a numerically stable softmax (the row maximum subtracted before exp).
class _ChunkedAttention:
    def __init__(self, rows: int = 24) -> None:
        self.rows = rows

    def __call__(self, q, k, v, causal=False, sm_scale=None):
        hq, nq, d = q.shape[1:]
        group, nk = hq // k.shape[1], k.shape[2]
        scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
        kf = k.float().repeat_interleave(group, 1)
        vf = v.float().repeat_interleave(group, 1)
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        keys = torch.arange(nk, device=q.device)
        for start in range(0, nq, self.rows):
            stop = min(nq, start + self.rows)
            s = q[:, :, start:stop].float() @ kf.transpose(-1, -2) * scale
            if causal:
                rows = torch.arange(start, stop, device=q.device)
                s = s.masked_fill(keys[None, :] > rows[:, None] + (nk - nq), float("-inf"))
            out[:, :, start:stop] = self._softmax(s) @ vf
        return out

    @staticmethod
    def _softmax(s):
        """Stable softmax over the last axis; a row with no visible key becomes zeros."""
        m = s.amax(-1, keepdim=True)
        p = torch.exp(s - m.nan_to_num(0.0, neginf=0.0))
        l = p.sum(-1, keepdim=True)
        return p / l.masked_fill(l == 0, 1.0)


attention = _ChunkedAttention()
