# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wall time of freeze and thaw through Ansible next to the bare session call, per instance.

    .venv/bin/python tests/benchmarks/freeze_thaw.py [--container NAME] [--instances IRIS,CACHE] [--rounds 3]

Without --container a throwaway container is started from irisops/iris-emu:bookworm (built by
tests/harness/build-images.sh) with the molecule settings and removed at the end.  For every instance and round:

* ``ansible``: one ansible-playbook run (docker connection) with an iris_freeze task then an iris_thaw task; the
  task wall times come from the ansible.posix.json callback, ``session`` is the module's own duration_ms of the
  ExternalFreeze / ExternalThaw session;
* ``bare``: ``iris session INST -U %SYS "##Class(Backup.General).ExternalFreeze()"`` (then ExternalThaw) run
  inside the container as the instance owner, timed inside the container.

It prints the figures and asserts nothing about time; it fails only if a freeze or thaw itself fails.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.environ.get('IRISOPS_IMAGE_EMU', 'irisops/iris-emu:bookworm')
OWNERS = {'IRIS': ('irisowner', ['iris', 'session', 'IRIS']), 'CACHE': ('cacheusr', ['csession', 'CACHE'])}

PLAYBOOK = """\
- hosts: bench
  gather_facts: false
  tasks:
    - name: freeze
      irisops.backup.iris_freeze:
        instances: "{{ bench_instance }}"
      register: bench_freeze
    - name: thaw
      irisops.backup.iris_thaw:
        instances: "{{ bench_instance }}"
      register: bench_thaw
"""

BARE = r"""
import subprocess, sys, time
argv = sys.argv[1:]
t = time.time()
rc = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
print('%d %.6f' % (rc, time.time() - t))
"""


def sh(argv, **kw):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          **kw)


def start_container():
    name = 'irisops-bench-%d' % os.getpid()
    sh(['docker', 'run', '-d', '--name', name, '--hostname', name, '--add-host', '%s:127.0.1.1' % name,
        '--network', 'none', '--tmpfs', '/run', '--tmpfs', '/run/lock', '-v', '/sys/fs/cgroup:/sys/fs/cgroup:ro',
        '--stop-signal', 'SIGRTMIN+3', IMAGE, '/lib/systemd/systemd'])
    deadline = time.time() + 60
    while time.time() < deadline:
        state = subprocess.run(['docker', 'exec', name, 'systemctl', 'is-system-running', '--wait'], check=False,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True).stdout
        if state.strip() in ('running', 'degraded'):
            break
        time.sleep(0.5)
    return name


def wait_running(container, instances):
    deadline = time.time() + 60
    while time.time() < deadline:
        ok = True
        for inst in instances:
            control = 'iris' if inst != 'CACHE' else 'ccontrol'
            out = subprocess.run(['docker', 'exec', container, control, 'qlist', inst], check=False,
                                 stdout=subprocess.PIPE, universal_newlines=True).stdout
            fields = out.strip().split('^')
            ok = ok and len(fields) > 3 and fields[3].startswith('running')
        if ok:
            return
        time.sleep(1)
    raise SystemExit('instances %s not running in %s' % (instances, container))


def ansible_round(container, inst, workdir):
    inv = os.path.join(workdir, 'inventory.yml')
    with open(inv, 'w') as f:
        json.dump({'all': {'hosts': {'bench': {'ansible_connection': 'community.docker.docker',
                                               'ansible_host': container,
                                               'ansible_python_interpreter': '/usr/bin/python3'}}}}, f)
    pb = os.path.join(workdir, 'bench.yml')
    with open(pb, 'w') as f:
        f.write(PLAYBOOK)
    env = dict(os.environ)
    env.setdefault('ANSIBLE_COLLECTIONS_PATH', os.path.join(REPO, '.cache', 'collections'))
    env.update(ANSIBLE_STDOUT_CALLBACK='ansible.posix.json', ANSIBLE_PIPELINING='true',
               ANSIBLE_HOST_KEY_CHECKING='false', ANSIBLE_NOCOLOR='1')
    playbook_bin = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    t = time.time()
    proc = subprocess.run([playbook_bin, '-i', inv, pb, '-e', 'bench_instance=%s' % inst], env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    total = time.time() - t
    out = proc.stdout
    data = json.loads(out[out.index('{'):])
    tasks = {}
    for task in data['plays'][0]['tasks']:
        res = task['hosts']['bench']
        dur = task['task']['duration']
        start = _ts(dur['start'])
        end = _ts(dur['end'])
        tasks[task['task']['name']] = (end - start, res)
    if proc.returncode != 0:
        raise SystemExit('ansible-playbook failed for %s:\n%s' % (inst, out[-3000:]))
    fr = tasks['freeze'][1]['instance_results'][inst]
    th = tasks['thaw'][1]['instance_results'][inst]
    if not (fr['changed'] and th['changed']):
        raise SystemExit('%s: freeze/thaw did not change anything: %s %s' % (inst, fr['msg'], th['msg']))
    return {'playbook': total, 'freeze_task': tasks['freeze'][0], 'thaw_task': tasks['thaw'][0],
            'freeze_session': fr['duration_ms'] / 1000.0, 'thaw_session': th['duration_ms'] / 1000.0}


def _ts(text):
    # ansible.posix.json: '2026-11-23T11:20:20.123456Z'
    import datetime
    text = text.rstrip('Z')
    fmt = '%Y-%m-%dT%H:%M:%S.%f' if '.' in text else '%Y-%m-%dT%H:%M:%S'
    return datetime.datetime.strptime(text, fmt).timestamp()


def bare_round(container, inst):
    owner, session = OWNERS[inst]
    res = {}
    for op, method in (('freeze', 'ExternalFreeze'), ('thaw', 'ExternalThaw')):
        argv = ['docker', 'exec', '-u', owner, container, 'python3', '-c', BARE] + session + [
            '-U', '%SYS', '##Class(Backup.General).%s()' % method]
        out = sh(argv).stdout.split()
        rc, secs = int(out[0]), float(out[1])
        if rc != 5:
            raise SystemExit('bare %s on %s exited %d' % (method, inst, rc))
        res[op] = secs
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--container', help='running emulator container (default: start a throwaway one)')
    ap.add_argument('--instances', default='IRIS,CACHE')
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()
    instances = [i.strip().upper() for i in a.instances.split(',') if i.strip()]
    own = a.container is None
    container = start_container() if own else a.container
    workdir = tempfile.mkdtemp(prefix='irisops-bench-')
    rows = []
    try:
        wait_running(container, instances)
        for inst in instances:
            for dummy in range(a.rounds):
                rows.append((inst, ansible_round(container, inst, workdir), bare_round(container, inst)))
    finally:
        # never leave an instance frozen behind
        for inst in instances:
            owner, session = OWNERS[inst]
            subprocess.run(['docker', 'exec', '-u', owner, container] + session +
                           ['-U', '%SYS', '##Class(Backup.General).ExternalThaw()'], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if own:
            subprocess.run(['docker', 'rm', '-f', container], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(['rm', '-rf', workdir], check=False)

    print('container %s, image %s, %d round(s) per instance; seconds, median (min-max)' % (
        container, IMAGE, a.rounds))
    cols = [('freeze_task', 'ansible freeze task'), ('freeze_session', 'module freeze session'),
            ('freeze', 'bare freeze session'), ('thaw_task', 'ansible thaw task'),
            ('thaw_session', 'module thaw session'), ('thaw', 'bare thaw session'),
            ('playbook', 'whole ansible-playbook')]
    print('%-8s %-24s %s' % ('instance', 'measure', 'seconds'))
    for inst in instances:
        mine = [(r_a, r_b) for i, r_a, r_b in rows if i == inst]
        for key, label in cols:
            vals = [ra[key] if key in ra else rb[key] for ra, rb in mine]
            print('%-8s %-24s %.3f (%.3f-%.3f)' % (inst, label, statistics.median(vals), min(vals), max(vals)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
