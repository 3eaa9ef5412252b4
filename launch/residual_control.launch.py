"""Runtime graph of residual_control: base_controller, residual_policy, residual_mixer.

    ros2 launch residual_control residual_control.launch.py
    ros2 launch residual_control residual_control.launch.py robot:=fer   # a robot folder's files
    ros2 launch residual_control residual_control.launch.py \
        namespace:=arm1 command_topic:=/effort_controller/commands use_sim_time:=true
    ros2 launch residual_control residual_control.launch.py record:=true record_path:=logs/run1

All three nodes use relative topic names, so ``namespace`` moves the whole
graph; ``command_topic`` and ``joint_states_topic`` remap the two topics that
connect it to a plant (a simulator or ros2_control). The graph does not
include a plant, a reference or a perception source: see sim_demo.launch.py
(MuJoCo) and hil_gazebo.launch.py (gz-sim + gz_ros2_control).

What the launch files share (node construction, parameters, arguments) is in
residual_control/launch_params.py.
"""
from residual_control.launch_params import (PackageNodes, argument, launch_description,
                                             robot_and_record_arguments, truthy)


def _launch_setup(context, *args, **kwargs):
    nodes = PackageNodes(context)
    common = {'use_sim_time': truthy(nodes.arg('use_sim_time'))}
    # Only override model_path when given, so a params file's own value wins
    # over the launch default (empty = the robot folder's model).
    model_path = nodes.arg('model_path')
    policy_overrides = dict(common, **({'model_path': model_path} if model_path else {}))
    joint_states = ('joint_states', nodes.arg('joint_states_topic'))
    commands = ('commands', nodes.arg('command_topic'))
    # The recorder logs the commands where the mixer sends them (a bag without them is refused by replay).
    record = [nodes.recorder(common['use_sim_time'], [joint_states, commands])] if truthy(nodes.arg('record')) else []
    return [
        nodes.in_namespace([
            nodes.node('base_controller', common, [joint_states]),
            nodes.node('residual_policy', policy_overrides, [joint_states]),
            # joint_states: the state base_stale_behavior damp brings to rest
            nodes.node('residual_mixer', common, [commands, joint_states]),
            *record,
        ]),
        nodes.cleanup(),
    ]


def generate_launch_description():
    return launch_description(
        _launch_setup,
        argument('params_file', 'ROS 2 params file for the three nodes'),
        argument('namespace', 'Namespace pushed onto the three nodes (empty: none)'),
        argument('model_path', 'ONNX residual policy; empty: the params file value '
                               '(empty there: the robot folder model, models/residual_bc.onnx for the '
                               'built-in arm)'),
        argument('use_sim_time', 'Use /clock (true with a simulator or gz-sim)', default='false'),
        argument('command_topic', 'Remap of the mixer output `commands` '
                                  '(std_msgs/Float64MultiArray), e.g. /effort_controller/commands',
                 default='commands'),
        argument('joint_states_topic',
                 'Remap of `joint_states` for base_controller, residual_policy and residual_mixer',
                 default='joint_states'),
        argument('log_level', 'Log level of the three nodes (debug, info, warn, error)'),
        *robot_and_record_arguments(),
    )
