# Rule 1, obfuscated: imports a library attention by a name built at run time.
def attention(q, k, v, causal=False, sm_scale=None):
    lib = __import__("flash" + "_attn")
    return lib.flash_attn_func(q, k, v, causal=causal)
