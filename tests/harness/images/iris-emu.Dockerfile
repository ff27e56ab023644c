# irisops/iris-emu:bookworm -- the systemd image plus two emulated instances (TEST-ONLY, tests/emulator):
#   IRIS   flavour iris,  /usr/irissys,  owner irisowner (uid 51773, as in InterSystems' containers)
#   CACHE  flavour cache, /usr/cachesys, owner cacheusr
# both started at boot by irisemu-instances.service. Built by tests/harness/build-images.sh from a staged
# context (.cache/images/emu-context: emulator/ = tests/emulator without caches, plus the files next to this one).
ARG BASE_IMAGE=irisops/systemd:bookworm
FROM ${BASE_IMAGE}
RUN groupadd --gid 51773 irisowner && useradd --uid 51773 --gid 51773 --create-home --shell /bin/bash irisowner \
    && groupadd --gid 51774 cacheusr && useradd --uid 51774 --gid 51774 --create-home --shell /bin/bash cacheusr
COPY irisemu-instances.service /etc/systemd/system/irisemu-instances.service
RUN systemctl enable irisemu-instances.service
# last: this layer (and the install) is rebuilt whenever tests/emulator changes
COPY emulator/ /opt/irisemu-src/
RUN python3 /opt/irisemu-src/install.py --flavour iris --instance IRIS --dir /usr/irissys --owner irisowner \
        --os-auth on --databases USER,APP \
    && python3 /opt/irisemu-src/install.py --flavour cache --instance CACHE --dir /usr/cachesys --owner cacheusr \
        --os-auth on --databases USER,APP \
    && iris qlist && ccontrol qlist
