# Sourced by the set-up and test scripts: which ROS 2 distribution, and its venv.
#   ROS_DISTRO=jazzy (default) -> .venv         (requirements/ros-jazzy.txt)
#   ROS_DISTRO=kilted          -> .venv-kilted  (requirements/ros-kilted.txt)
# A sourced ROS installation sets ROS_DISTRO too; only the distributions with a pinned wheel set here
# are accepted.
rc_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rc_distro="${ROS_DISTRO:-jazzy}"
if [ ! -f "$rc_root/requirements/ros-$rc_distro.txt" ]; then
  echo "ROS_DISTRO: expected one of: $(cd "$rc_root/requirements" && ls ros-*.txt | sed 's/^ros-//;s/\.txt$//' | tr '\n' ' ')found '$rc_distro'" >&2
  exit 2
fi
if [ "$rc_distro" = jazzy ]; then rc_venv="$rc_root/.venv"; else rc_venv="$rc_root/.venv-$rc_distro"; fi
