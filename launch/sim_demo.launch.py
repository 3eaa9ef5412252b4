"""MuJoCo demo: simulated arm + reference + perception + the residual control graph.

    ros2 launch residual_control sim_demo.launch.py
    ros2 launch residual_control sim_demo.launch.py robot:=fer   # a robot folder's files
    ros2 launch residual_control sim_demo.launch.py plant_file:=real.yaml
    ros2 launch residual_control sim_demo.launch.py sim_mode:=lockstep
    ros2 launch residual_control sim_demo.launch.py record:=true record_path:=logs/sim1   # a rosbag2 bag

Nodes (all relative topic names, pushed into ``namespace`` when given):
  mujoco_sim           pub joint_states, /clock; sub commands
  reference_publisher  pub reference
  perception           pub perception
  + residual_control.launch.py (base_controller, residual_policy, residual_mixer)
    with use_sim_time, publishing `commands` straight to mujoco_sim, and with
    record:=true residual_recorder (a rosbag2 bag of the graph's topics in record_path).
"""
from residual_control.launch_params import (PackageNodes, argument, launch_argument, launch_description,
                                             robot_and_record_arguments, truthy)


def _launch_setup(context, *args, **kwargs):
    use_sim_time = truthy(launch_argument(context, 'use_sim_time'))
    sim_mode = launch_argument(context, 'sim_mode')
    if sim_mode == 'lockstep' and not use_sim_time:
        raise RuntimeError('sim_mode:=lockstep needs use_sim_time:=true (/clock from mujoco_sim)')

    nodes = PackageNodes(context)
    # mujoco_sim is the clock source: it keeps its own (steady) time and, with
    # use_sim_time, publishes /clock for every other node.
    # In lockstep the simulated loop also waits for the policy's residual of each state (while it answers),
    # so a loaded machine slows the simulation down instead of starving the policy.
    mujoco_sim = nodes.node('mujoco_sim', {'plant_file': nodes.arg('plant_file'), 'mode': sim_mode,
                                           'publish_clock': use_sim_time, 'use_sim_time': False,
                                           'lockstep_residual_topic': 'residual_action' if sim_mode == 'lockstep'
                                           else ''})
    return [
        nodes.in_namespace([mujoco_sim, *nodes.plant_side(use_sim_time)]),
        nodes.runtime(use_sim_time),
        nodes.cleanup(),
    ]


def generate_launch_description():
    return launch_description(
        _launch_setup,
        argument('plant_file', 'Plant parameters of the simulated arm (config/plants/*.yaml; '
                               'a bare name such as real.yaml is looked up in the package)'),
        argument('params_file', 'ROS 2 params file for all nodes'),
        argument('reference_file', 'Params file of reference_publisher (the reference trajectory)'),
        argument('namespace', 'Namespace pushed onto every node (empty: none)'),
        argument('model_path', 'ONNX residual policy; empty: the params file value'),
        argument('use_sim_time', 'mujoco_sim publishes /clock and every other node runs on it', default='true'),
        argument('sim_mode', 'mujoco_sim mode: realtime (wall-clock paced) or lockstep '
                             '(one control period per command; needs use_sim_time:=true)', default='realtime'),
        argument('log_level', 'Log level of all nodes'),
        *robot_and_record_arguments(),
    )
