"""TEST-ONLY: run the SSM command document of the aws_dlm target the way Amazon Data Lifecycle Manager (DLM) and
the SSM Agent run a snapshot policy's pre and post scripts on an instance.

DLM (AWS EBS user guide "Automate application-consistent snapshots with Data Lifecycle Manager"; DLM API type
Script, as in botocore's dlm service model):
  * the document must have a command parameter whose allowedValues include pre-script, post-script and dry-run,
    else DLM treats the execution as failed;
  * before it initiates snapshot creation DLM runs the document with command=pre-script; after it initiated it,
    with command=post-script - only if the pre script succeeded ("If the pre script fails, Amazon Data Lifecycle
    Manager will not run the post script");
  * ExecutionTimeout (10..120 s, default 10) applies to each script: an attempt that has not completed by then
    fails.  Whether DLM cancels the command then is not documented; this simulator cancels it (the SSM Agent kills
    a cancelled command's process group);
  * MaximumRetryCount (0..3, default 0): a failed pre script retries the entire snapshot creation process (pre
    script, snapshot, post script); a failed post script retries the post script only;
  * ExecuteOperationOnScriptFailure (default true): after the pre script failed (all retries) take crash-consistent
    snapshots; false: no snapshot of the instance in this schedule run;
  * exit codes 201..206 tell DLM the type of error (AWS's sample documents): 201 pre failed, 202 post failed,
    203 auto thaw before the post script, 204 pre while post expected, 205 post while pre expected, 206 not ready.
SSM Agent (aws/amazon-ssm-agent agent/plugins/runscript, agent/executers/executers_unix.go):
  * {{ name }} placeholders are replaced by the parameter values, which must satisfy allowedValues/allowedPattern;
  * runCommand is written to <orchestration dir>/_script.sh and run as root with `sh -c <script>` as the leader of
    a new process group, stdout/stderr to files; timeoutSeconds (default 3600) kills the whole group with SIGKILL;
  * exit status 0 = Success, anything else = Failed.
Assumption of this simulator (not documented): the pre and the post script of one execution get the same
executionId.  --during is the snapshot.  Prints a JSON report; exit 0 when the snapshot is application-consistent.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C'}
COMMANDS = ('pre-script', 'post-script', 'dry-run')
PLACEHOLDER = re.compile(r'\{\{\s*(\w+)\s*\}\}')


def load_document(path):
    """(document, error): the SSM document, checked as DLM and Systems Manager would."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (IOError, OSError, ValueError) as exc:
        return None, 'cannot read the SSM document %s: %s' % (path, exc)
    if doc.get('schemaVersion') != '2.2':
        return None, 'schemaVersion %r: a Command document for DLM has 2.2' % doc.get('schemaVersion')
    params = doc.get('parameters') or {}
    allowed = (params.get('command') or {}).get('allowedValues') or []
    if not all(c in allowed for c in COMMANDS):
        return None, 'command allowedValues %r lack pre-script/post-script/dry-run: DLM treats it as failed' % allowed
    steps = doc.get('mainSteps') or []
    if len(steps) != 1 or steps[0].get('action') != 'aws:runShellScript':
        return None, 'mainSteps: expected one aws:runShellScript step'
    if (steps[0].get('precondition') or {}).get('StringEquals') not in (None, ['platformType', 'Linux']):
        return None, 'the step does not run on Linux'
    return doc, None


def parameter_values(doc, command, execution_id):
    params = doc['parameters']
    values = {}
    for name, spec in params.items():
        value = {'command': command, 'executionId': execution_id}.get(name, spec.get('default'))
        if value is None:
            raise ValueError('parameter %s has no value' % name)
        if spec.get('allowedValues') and value not in spec['allowedValues']:
            raise ValueError('parameter %s=%r is not one of %r' % (name, value, spec['allowedValues']))
        if spec.get('allowedPattern') and not re.match(spec['allowedPattern'], value):
            raise ValueError('parameter %s=%r does not match %s' % (name, value, spec['allowedPattern']))
        values[name] = value
    return values


def run_document(doc, command, execution_id, execution_timeout, report):
    """One SSM command invocation; returns the run record (rc None = timed out / cancelled)."""
    step = doc['mainSteps'][0]
    values = parameter_values(doc, command, execution_id)
    lines = [PLACEHOLDER.sub(lambda m: values[m.group(1)], line) for line in step['inputs']['runCommand']]
    timeout = min(int(step['inputs'].get('timeoutSeconds') or 3600), execution_timeout)
    orch = tempfile.mkdtemp(prefix='ssm-orchestration-')
    script = os.path.join(orch, '_script.sh')
    with open(script, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    os.chmod(script, 0o700)
    out_path, err_path = os.path.join(orch, 'stdout'), os.path.join(orch, 'stderr')
    start = time.time()
    with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
        proc = subprocess.Popen(['sh', '-c', script], cwd=orch, env=ENV, stdout=out, stderr=err,
                                preexec_fn=os.setpgrp)
        try:
            rc = proc.wait(timeout=timeout)
            status = 'Success' if rc == 0 else 'Failed'
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc, status = None, 'TimedOut'
    with open(out_path, 'rb') as f:
        stdout = f.read().decode('utf-8', 'replace')
    with open(err_path, 'rb') as f:
        stderr = f.read().decode('utf-8', 'replace')
    shutil.rmtree(orch, ignore_errors=True)
    run = {'command': command, 'executionId': execution_id, 'rc': rc, 'status': status, 'timeout': timeout,
           'seconds': round(time.time() - start, 2), 'output': (stdout + stderr)[-4000:]}
    report['runs'].append(run)
    return run


def summarize(report):
    """The same summary as gce_guest_flush_sim.py: the last pre and post run, 'ok' / 'error' / 'timeout' / None."""
    def last(command):
        runs = [r for r in report['runs'] if r['command'] == command]
        if not runs:
            return None, None
        return {'Success': 'ok', 'Failed': 'error', 'TimedOut': 'timeout'}[runs[-1]['status']], runs[-1]['rc']
    report['pre'], report['pre_rc'] = last('pre-script')
    report['post'], report['post_rc'] = last('post-script')
    return json.dumps(report, indent=2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--document', default='/etc/irisops/irisops-aws-dlm-ssm-document.json')
    p.add_argument('--execution-timeout', type=int, default=10, help='the policy\'s ExecutionTimeout (10..120)')
    p.add_argument('--retries', type=int, default=0, help='MaximumRetryCount (0..3)')
    p.add_argument('--no-crash-consistent', action='store_true',
                   help='ExecuteOperationOnScriptFailure false: skip the instance when the pre script fails')
    p.add_argument('--during', help='shell command run after the pre script (the snapshot)')
    p.add_argument('--post-lost', action='store_true',
                   help='the post script never reaches the instance (SSM Agent down, instance unreachable)')
    p.add_argument('--command', choices=COMMANDS, help='run the document once with this command, no policy flow')
    p.add_argument('--execution-id', default=None)
    a = p.parse_args()
    if not 10 <= a.execution_timeout <= 120 or not 0 <= a.retries <= 3:
        p.error('ExecutionTimeout 10..120, MaximumRetryCount 0..3')
    report = {'document': a.document, 'runs': [], 'during': None, 'snapshot': None}
    doc, err = load_document(a.document)
    if err:
        report['outcome'] = 'failed execution: %s' % err
        print(summarize(report))
        return 1
    execution_id = a.execution_id or str(uuid.uuid4())
    if a.command:
        run = run_document(doc, a.command, execution_id, a.execution_timeout, report)
        report['outcome'] = '%s %s (exit %s)' % (a.command, run['status'], run['rc'])
        print(summarize(report))
        return 0 if run['status'] == 'Success' else 1
    for _attempt in range(a.retries + 1):
        pre = run_document(doc, 'pre-script', execution_id, a.execution_timeout, report)
        if pre['status'] != 'Success':
            continue
        if a.during:
            proc = subprocess.run(['/bin/sh', '-c', a.during], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  check=False)
            report['during'] = {'rc': proc.returncode, 'output': proc.stdout.decode('utf-8', 'replace')}
        report['snapshot'] = 'application-consistent'
        if a.post_lost:
            report['outcome'] = 'snapshot initiated; the post script never ran'
            print(summarize(report))
            return 1
        for _post_attempt in range(a.retries + 1):
            post = run_document(doc, 'post-script', execution_id, a.execution_timeout, report)
            if post['status'] == 'Success':
                report['outcome'] = 'application-consistent'
                print(summarize(report))
                return 0
        report['outcome'] = 'snapshot initiated; post script %s (exit %s)' % (post['status'], post['rc'])
        print(summarize(report))
        return 1
    why = 'pre script %s (exit %s)' % (pre['status'], pre['rc'])
    if a.no_crash_consistent:
        report['outcome'] = 'no snapshot of the instance: %s' % why
    else:
        report['snapshot'] = 'crash-consistent'
        report['outcome'] = 'crash-consistent snapshot: %s' % why
    print(summarize(report))
    return 1


if __name__ == '__main__':
    sys.exit(main())
