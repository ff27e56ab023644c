# irisops/systemd:bookworm -- the imported debootstrap image with systemd as PID 1, fit to run unprivileged
# (docker run --cap-add ALL --cap-drop SYS_RESOURCE --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro).
# Built by tests/harness/build-images.sh; no network needed (systemd is already in the debootstrap rootfs).
ARG BASE_IMAGE=irisops/base:bookworm
FROM ${BASE_IMAGE}
ENV container=docker LANG=C.UTF-8
# Units that need real hardware, a console or kernel mounts a container does not get.
RUN systemctl mask \
        systemd-udevd.service systemd-udevd-kernel.socket systemd-udevd-control.socket \
        systemd-udev-trigger.service systemd-udev-settle.service \
        getty.target getty@tty1.service console-getty.service serial-getty@.service \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount \
        dev-hugepages.mount dev-mqueue.mount systemd-remount-fs.service systemd-modules-load.service \
        systemd-firstboot.service systemd-update-utmp.service systemd-update-utmp-runlevel.service \
        systemd-random-seed.service systemd-journald-audit.socket \
    && systemctl set-default multi-user.target \
    && : > /etc/machine-id \
    && rm -f /var/lib/dbus/machine-id
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
