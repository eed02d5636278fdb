"""treerpo: TreeRPO and TreePO, the methods themselves (trees, samplers, advantages, verifier).

Nothing here needs verl; `verl_ext` plugs it into verl 0.9.1.
"""

__version__ = "0.1.0"
