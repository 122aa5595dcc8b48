"""SSH signatures for mreg: who registered which exact weights, and who approved each release.

mreg signs short text statements (:mod:`.statement`) in OpenSSH's SSHSIG format
(:mod:`.sshsig`), the format of ``ssh-keygen -Y sign`` and of git's
``gpg.format=ssh``, and trusts only the keys of an allowed signers file
(:mod:`.allowed_signers`, git's ``gpg.ssh.allowedSignersFile``). A third party can
check every signature with ``ssh-keygen -Y verify`` alone.

Dependency rule: modules of this package import only :mod:`mreg.errors`, :mod:`mreg.text`,
each other and the standard library, plus ``cryptography``, which only the functions that sign
or verify import (so ``mreg show`` never loads it). Private key bytes are never
printed, logged, copied or stored.
"""
