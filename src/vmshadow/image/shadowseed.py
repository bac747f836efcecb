"""The NoCloud seed of a shadow that boots the target's own OS.

The shadow has no network interface and no use for most of what a cloud
image starts at boot, so the seed strips the boot down and starts the agent
as early as cloud-init lets anything run:

- ``network-config`` disables cloud-init's networking (there is no NIC);
  cloud-init 22.4 reads ``config: disabled`` at the top of the datasource's
  network config, later versions look under ``network:``, so it says both;
- ``bootcmd`` (cloud-init's first stage after the datasource, well before
  SSH, gettys or cloud-init's later stages) checks the guest can run the
  agent, mounts the tools disk read-only and starts the agent under
  ``systemd-run`` (its own unit, so it outlives cloud-init's) with the
  guest's own ``python3``; it then masks the units a throwaway, network-less
  guest never needs, so they neither slow the boot nor show in its idle
  footprint;
- cloud-init's own module lists are cut to ``bootcmd`` alone: no SSH host
  keys, users or package runs (each costs seconds of Python under TCG);
- ``locale: C.UTF-8``: Debian's locale step fails without it, should an
  image run its config stage anyway.

Anything that keeps the agent from starting is said on the console with the
``vmshadow-target:`` prefix, and the guest powers off: the host sees the
shadow end at once (rather than at the hello timeout), and reads why from
the console (``shadow.targetos.console_reason``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vmshadow.domain.shadow import AGENT_CHANNEL, SCRATCH_SERIAL, TOOLS_SERIAL
from vmshadow.image.seed import write_seed

MOUNT_POINT = "/run/vmshadow-tools"
CONSOLE_PREFIX = "vmshadow-target:"
HOSTNAME = "vmshadow-shadow"
MIN_PYTHON = (3, 10)  # the agent's sources use X | Y unions at run time
# Units a shadow never needs: remote logins, periodic jobs, package updates,
# login prompts, cloud-init's later stages (their module lists are empty
# anyway; each still starts Python: 7 s under TCG). Names an image lacks
# are masked all the same, harmlessly.
MASKED_UNITS = (
    "ssh.service",
    "ssh.socket",
    "sshd.service",
    "cron.service",
    "crond.service",
    "atd.service",
    "timers.target",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "unattended-upgrades.service",
    "dpkg-db-backup.timer",
    "man-db.timer",
    "logrotate.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "motd-news.timer",
    "systemd-tmpfiles-clean.timer",
    "snapd.service",
    "packagekit.service",
    "getty.target",
    "getty-static.service",
    "getty@tty1.service",
    "serial-getty@ttyS0.service",
    "cloud-config.service",
    "cloud-final.service",
    "cloud-init-hotplugd.socket",
    # Nothing to configure or wait for without a NIC (a wait-online unit
    # would wait up to 2 minutes for a network that never comes).
    "networking.service",
    "systemd-networkd-wait-online.service",
    "NetworkManager-wait-online.service",
)
# cloud-init's network stage has nothing left to do once its first (local)
# stage ran bootcmd; masked only then: from inside that stage, masking it
# with --now would stop the very script that runs this.
LOCAL_STAGE_ONLY = ("cloud-init.service",)

# POSIX sh, run by cloud-init's bootcmd as root. {placeholders} are filled
# from constants only, never from user input. The command given to
# systemd-run holds no "$" once this shell has expanded $scratch: systemd
# (252 in Debian 12) expands $NAME in a unit's command line itself.
START_AGENT = """\
say() {{ {{ echo "{prefix} $*" > /dev/console; }} 2>/dev/null || echo "{prefix} $*"; }}
give_up() {{ say "$*; powering off"; sync; poweroff -f; exit 1; }}
disk_with_serial() {{
  for d in /sys/block/*; do
    [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && {{ echo "/dev/${{d##*/}}"; return 0; }}
  done
  return 1
}}
[ "$(uname -m)" = x86_64 ] || give_up "the guest is $(uname -m), the tools are x86_64"
command -v python3 > /dev/null || give_up "the guest has no python3 for the agent"
python3 -c 'import sys; sys.exit(sys.version_info < {min_python})' \\
  || give_up "the guest's $(python3 -V 2>&1) is older than the agent needs ({min_text})"
command -v systemd-run > /dev/null || give_up "the guest has no systemd-run to start the agent"
tools=$(disk_with_serial {tools_serial}) || give_up "no tools disk (serial {tools_serial})"
scratch=$(disk_with_serial {scratch_serial}) || give_up "no scratch disk (serial {scratch_serial})"
mkdir -p {mount}
mount -t iso9660 -o ro "$tools" {mount} || give_up "cannot mount the tools disk $tools"
systemd-run --unit=vmshadow-agent --no-block -p DefaultDependencies=no \\
  -p StandardOutput=journal+console -p StandardError=journal+console \\
  --setenv=PYTHONPATH={mount}/agent --setenv=PYTHONDONTWRITEBYTECODE=1 \\
  --setenv=PATH={mount}/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
  /bin/sh -c "python3 -m vmshadow.agent.guest --port-name {channel} --scratch $scratch; \\
    echo '{prefix} the agent exited; powering off' > /dev/console; poweroff -f" \\
  || give_up "systemd-run could not start the agent"
say "agent started from $tools, scratch $scratch"
units="{units}"
[ "$(systemctl is-active cloud-init-local.service)" = activating ] && units="$units {local_only}"
# --runtime: in /run, beside whatever /etc holds (an alias there makes a
# plain mask of that name fail, and with it the whole list).
systemctl mask --runtime --now --no-block $units > /dev/null 2>&1 || true
"""


def start_agent_script() -> str:
    return START_AGENT.format(
        prefix=CONSOLE_PREFIX,
        min_python=repr(MIN_PYTHON),
        min_text=".".join(map(str, MIN_PYTHON)),
        tools_serial=TOOLS_SERIAL,
        scratch_serial=SCRATCH_SERIAL,
        mount=MOUNT_POINT,
        channel=AGENT_CHANNEL,
        units=" ".join(MASKED_UNITS),
        local_only=" ".join(LOCAL_STAGE_ONLY),
    )


def shadow_user_data() -> str:
    """The ``#cloud-config`` of every target-OS shadow."""
    config = {
        "locale": "C.UTF-8",
        # Only bootcmd, in cloud-init's first stage; nothing in the later ones.
        "cloud_init_modules": ["bootcmd"],
        "cloud_config_modules": [],
        "cloud_final_modules": [],
        "bootcmd": [start_agent_script()],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, width=1000)


def shadow_network_config() -> str:
    return yaml.safe_dump({"config": "disabled", "network": {"config": "disabled"}})


def write_shadow_seed(path: Path, shadow_id: str) -> None:
    """This shadow's seed ISO at ``path``: a new instance id per shadow, so
    cloud-init runs its per-instance steps (bootcmd runs at every boot anyway)."""
    write_seed(
        path,
        hostname=HOSTNAME,
        instance_id=f"vmshadow-{shadow_id}",
        user_data=shadow_user_data(),
        network_config=shadow_network_config(),
    )
