"""MuJoCo demo: simulated arm + reference + perception + the residual control graph.

    ros2 launch residual_control sim_demo.launch.py
    ros2 launch residual_control sim_demo.launch.py plant_file:=real.yaml
    ros2 launch residual_control sim_demo.launch.py sim_mode:=lockstep

Nodes (all relative topic names, pushed into ``namespace`` when given):
  mujoco_sim           pub joint_states, /clock; sub commands
  reference_publisher  pub reference
  perception           pub perception
  + residual_control.launch.py (base_controller, residual_policy, residual_mixer)
    with use_sim_time, publishing `commands` straight to mujoco_sim.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, GroupAction, IncludeLaunchDescription,
                            OpaqueFunction, RegisterEventHandler)
from launch.event_handlers import OnShutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

from residual_control.launch_params import NodeParams, in_namespace, truthy

PACKAGE = 'residual_control'


def _launch_setup(context, *args, **kwargs):
    share = get_package_share_directory(PACKAGE)
    namespace = LaunchConfiguration('namespace').perform(context)
    params_file = LaunchConfiguration('params_file').perform(context)
    reference_file = LaunchConfiguration('reference_file').perform(context)
    plant_file = LaunchConfiguration('plant_file').perform(context)
    use_sim_time = truthy(LaunchConfiguration('use_sim_time').perform(context))
    log_level = LaunchConfiguration('log_level').perform(context)
    ros_args = ['--log-level', log_level]

    sim_mode = LaunchConfiguration('sim_mode').perform(context)
    if sim_mode == 'lockstep' and not use_sim_time:
        raise RuntimeError('sim_mode:=lockstep needs use_sim_time:=true (/clock from mujoco_sim)')

    # Launch arguments win over every entry of the params files, with or
    # without a namespace; generated files live in a private folder removed
    # at shutdown. See residual_control/launch_params.py.
    parameters = NodeParams(in_namespace(namespace, context.launch_configurations))

    # mujoco_sim is the clock source: it keeps its own (steady) time and, with
    # use_sim_time, publishes /clock for every other node.
    mujoco_sim = Node(
        package=PACKAGE,
        executable='mujoco_sim',
        name='mujoco_sim',
        output='screen',
        parameters=parameters('mujoco_sim', [params_file],
                              {'plant_file': plant_file, 'mode': sim_mode,
                               'publish_clock': use_sim_time, 'use_sim_time': False}),
        ros_arguments=ros_args,
    )
    reference_publisher = Node(
        package=PACKAGE,
        executable='reference_publisher',
        name='reference_publisher',
        output='screen',
        parameters=parameters('reference_publisher', [params_file, reference_file],
                              {'use_sim_time': use_sim_time}),
        ros_arguments=ros_args,
    )
    perception = Node(
        package=PACKAGE,
        executable='perception',
        name='perception',
        output='screen',
        parameters=parameters('perception', [params_file],
                              {'plant_file': plant_file, 'use_sim_time': use_sim_time}),
        ros_arguments=ros_args,
    )
    sim_nodes = [mujoco_sim, reference_publisher, perception]
    if namespace.strip('/'):
        sim_nodes.insert(0, PushRosNamespace(namespace))

    runtime = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(share, 'launch', 'residual_control.launch.py')),
        launch_arguments={
            'params_file': params_file,
            'namespace': namespace,
            'model_path': LaunchConfiguration('model_path').perform(context),
            'use_sim_time': 'true' if use_sim_time else 'false',
            'command_topic': 'commands',
            'joint_states_topic': 'joint_states',
            'log_level': log_level,
        }.items(),
    )
    cleanup = RegisterEventHandler(OnShutdown(
        on_shutdown=[OpaqueFunction(function=parameters.folder.cleanup)]))
    return [GroupAction(sim_nodes), runtime, cleanup]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument(
            'plant_file',
            default_value=os.path.join(share, 'config', 'plants', 'nominal.yaml'),
            description='Plant parameters of the simulated arm (config/plants/*.yaml; '
                        'a bare name such as real.yaml is looked up in the package)'),
        DeclareLaunchArgument(
            'params_file',
            default_value=os.path.join(share, 'config', 'residual_control.yaml'),
            description='ROS 2 params file for all nodes'),
        DeclareLaunchArgument(
            'reference_file',
            default_value=os.path.join(share, 'config', 'reference.yaml'),
            description='Params file of reference_publisher (the reference trajectory)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace pushed onto every node (empty: none)'),
        DeclareLaunchArgument(
            'model_path', default_value='',
            description='ONNX residual policy; empty: the params file value'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='true',
            description='mujoco_sim publishes /clock and every other node runs on it'),
        DeclareLaunchArgument(
            'sim_mode', default_value='realtime',
            description='mujoco_sim mode: realtime (wall-clock paced) or lockstep '
                        '(one control period per command; needs use_sim_time:=true)'),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            description='Log level of all nodes'),
        OpaqueFunction(function=_launch_setup),
    ])
