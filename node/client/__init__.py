"""What runs in the user's process: RemoteNode, pointers, VirtualNode.

Layered without import cycles, bottom up: :mod:`.host` (the protocols a
pointer and a shared tensor use) and :mod:`.ids`; :mod:`.pointer`;
:mod:`.streaming` and :mod:`.pipeline` (what both handles post, written
once); :mod:`.mpc` (shared tensors, over pointers and the ``Handle``
protocol); :mod:`.handle`; :mod:`.models` and :mod:`.optim` (remote
training, over pointers); and on top :mod:`.remote`, :mod:`.virtual`,
:mod:`.aio`, :mod:`.grid`, :mod:`.hook` and :mod:`.fl`.
"""
