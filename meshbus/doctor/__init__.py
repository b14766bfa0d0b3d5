"""``meshbus doctor``: why can't this container reach the others?

Run inside a container (or anywhere), it checks the configuration meshbus would use and what
the usual Docker networking failures look like from here, says how to fix each, and exits
non-zero when something failed, so it can serve as a healthcheck. Each finding is ``ok``,
``skip`` (could not be checked here, and how to make it checkable), ``warn`` or ``fail``.

Without the Docker engine:

- the default bridge network, where container names do not resolve (no embedded DNS
  ``127.0.0.11`` in ``/etc/resolv.conf``);
- ``localhost`` in a URL, which inside a container means the container itself;
- a name that does not resolve (meshbus's own resolver, as ``dns://`` uses);
- an address whose port does not answer;
- ``dns://`` names that are one Swarm virtual IP; ``file://`` folders; ``MESHBUS_*`` settings;
- MTU: the MTU of each interface (``/sys/class/net``), and, for each direct peer (``tcp://``,
  ``dns://``) whose port answers, a probe: a small meshbus hello, then one of 16 KiB on a new
  connection. A listener answers only once it has read a whole hello, so an answer proves the
  frame arrived; the small one answered and the large one not is an MTU black hole (a path
  that drops packets larger than it carries, typically an overlay whose MTU is more than the
  links between hosts minus the 50 bytes of VXLAN). A payload larger than the MTU is no
  problem by itself: TCP cuts it to size. The path MTU and retransmissions the kernel saw
  (``TCP_INFO``) are reported. Broker URLs are not probed (their protocols have no harmless
  large frame).

With the engine's API (``/var/run/docker.sock`` mounted, or ``DOCKER_HOST`` ``unix://`` or a
plain ``tcp://`` socket proxy; read-only ``GET`` requests, API version from ``/_ping``), once it
has found this container (its id in ``/proc/self/mountinfo`` or ``cgroup``, else the hostname):

- a name that does not resolve: which container answers to it (container name, compose service
  label, Swarm service, network alias), which networks each side is on and that they share
  none, or that it is stopped, or that nothing has that name;
- a port that does not answer: which container has that address, and whether it shares a
  network with this one;
- peers by label: every running container labelled ``meshbus.peer`` (with the same value as
  this container's label, when it has one) must share a user-defined network with this one
  (``fail``), and so should the other services of this container's compose project (``warn``);
- overlay networks whose MTU (``com.docker.network.driver.mtu``, default 1450) is over 1450,
  which needs links larger than 1500 bytes between the hosts (``warn``).

Without the socket these say ``skip`` and how to mount it.
"""

from meshbus.doctor._diagnose import diagnose
from meshbus.doctor._report import Finding, render

__all__ = ["Finding", "diagnose", "render"]
