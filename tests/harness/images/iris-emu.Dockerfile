# irisops/iris-emu:bookworm -- the systemd image plus two emulated instances (TEST-ONLY, tests/emulator):
#   IRIS   flavour iris,  /usr/irissys,  owner irisowner (uid 51773, as in InterSystems' containers)
#   CACHE  flavour cache, /usr/cachesys, owner cacheusr
# both started at boot by irisemu-instances.service. Built by tests/harness/build-images.sh from a staged
# context (.cache/images/emu-context: emulator/ = tests/emulator without caches, plus the files next to this one,
# plus emu_ssh_key.pub, the public half of the test key pair build-images.sh generates in .cache/images/).
# Also Debian's openssh-server, NOT started at boot (ssh.service/ssh.socket disabled): tests run
#   ssh -i .cache/images/emu_ssh_key -o ProxyCommand='docker exec -i <ctr> /usr/sbin/sshd -i' root@<anything>
# (host keys generated at build time, /run/sshd made at boot by tmpfiles.d), and Debian's restic.
ARG BASE_IMAGE=irisops/systemd:bookworm
FROM ${BASE_IMAGE}
RUN groupadd --gid 51773 irisowner && useradd --uid 51773 --gid 51773 --create-home --shell /bin/bash irisowner \
    && groupadd --gid 51774 cacheusr && useradd --uid 51774 --gid 51774 --create-home --shell /bin/bash cacheusr
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server restic \
    && systemctl disable ssh.service ssh.socket \
    && ssh-keygen -A \
    && echo 'd /run/sshd 0755 root root -' >/etc/tmpfiles.d/irisemu-sshd.conf \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
        /usr/share/doc/* /usr/share/man/*
COPY emu_ssh_key.pub /root/.ssh/authorized_keys
RUN chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys && chown -R root:root /root/.ssh
COPY irisemu-instances.service /etc/systemd/system/irisemu-instances.service
RUN systemctl enable irisemu-instances.service
# last: this layer (and the install) is rebuilt whenever tests/emulator changes
COPY emulator/ /opt/irisemu-src/
RUN python3 /opt/irisemu-src/install.py --flavour iris --instance IRIS --dir /usr/irissys --owner irisowner \
        --os-auth on --databases USER,APP \
    && python3 /opt/irisemu-src/install.py --flavour cache --instance CACHE --dir /usr/cachesys --owner cacheusr \
        --os-auth on --databases USER,APP \
    && iris qlist && ccontrol qlist
